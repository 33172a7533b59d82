"""``manage.py demo``: the idempotent setup step of ``make demo``.

Creates (or finds) an admin and two annotators, a project for the dataset and its documents, and
prints what to open. A second run changes nothing: accounts and the project are looked up by name
and documents already in the project are not imported again.

No model is trained from the gold labels: like a fresh Prodigy or Label Studio project, the first
model is trained once the annotators have given ``retrain_after`` labels; until then the queue
serves documents in its cold-start order. Gold labels stay in ``Document.gold_label`` for replay
and evaluation only.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from labeling.models import Document, Project
from labeling.roles import ANNOTATOR
from labeling.services import import_readers, imports, projects
from labeling.services.memberships import membership_ensure

# Demo accounts; the passwords are printed and can be overridden with DEMO_PASSWORD.
ACCOUNTS = (("admin", True), ("annotator1", False), ("annotator2", False))


def demo_users_ensure(password: str, project: Project) -> list[tuple[str, bool]]:
    """Get or create the demo accounts, annotators of ``project``; returns (username, created)."""
    User = get_user_model()
    out = []
    for username, is_admin in ACCOUNTS:
        user, created = User.objects.get_or_create(
            username=username, defaults={"is_staff": is_admin, "is_superuser": is_admin}
        )
        if created:
            user.set_password(password)
            user.save(update_fields=["password"])
        if not is_admin:
            membership_ensure(project=project, user=user, role=ANNOTATOR)
        out.append((username, created))
    return out


def _builtin_records(name: str) -> tuple[list[str], list[dict[str, Any]]]:
    from modelsvc.datasets import load_builtin

    texts, labels = load_builtin(name)
    pairs = enumerate(zip(texts, labels, strict=True))
    records = [{"id": f"{name}-{i}", "text": t, "label": lab} for i, (t, lab) in pairs]
    return sorted(set(labels)), records


class Command(BaseCommand):
    help = "Set up the demo: accounts, a project from a dataset, its documents (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dataset", default="rt-snippets", help="rt-snippets, trec, or a file path")
        parser.add_argument("--text-col", default="text")
        parser.add_argument("--label-col", default=None, help="gold labels (default: 'label')")
        parser.add_argument("--labels", default=None, help="label set a,b for unlabeled files")
        parser.add_argument("--project", default=None, help="project name (default: 'Demo: <dataset>')")
        parser.add_argument("--limit", type=int, default=None, help="import only the first N rows")

    def handle(self, *args: Any, **opts: Any) -> None:
        password = os.environ.get("DEMO_PASSWORD", "alabel-demo")
        dataset = opts["dataset"]
        name = opts["project"] or f"Demo: {Path(dataset).name if os.sep in dataset else dataset}"
        project = Project.objects.filter(name=name).first()
        if project is None:
            project = self._create_project(name, dataset, opts)
        if Document.objects.filter(project=project).exists():
            n = Document.objects.filter(project=project).count()
            self.stdout.write(f"project {name!r}: {n:,} documents already imported (skipped)")
        else:
            self._import(project, dataset, opts)
        users = demo_users_ensure(password, project)
        self.stdout.write("")
        self.stdout.write("accounts (created now: *):")
        for username, created in users:
            role = "admin" if username == "admin" else "annotator"
            self.stdout.write(f"  {'*' if created else ' '} {username:<11} password {password:<14} {role}")
        self.stdout.write(f"project {project.name!r} (id {project.pk}): first model after "
                          f"{project.retrain_after} labels, strategy {project.acquisition_strategy}")

    def _create_project(self, name: str, dataset: str, opts: dict[str, Any]) -> Project:
        if dataset in ("rt-snippets", "trec"):
            label_names, _ = _builtin_records(dataset)
        elif opts["labels"]:
            label_names = [x.strip() for x in opts["labels"].split(",") if x.strip()]
        else:
            label_col = opts["label_col"] or "label"
            try:
                label_names = import_readers.file_label_names(path=dataset, label_col=label_col)
            except import_readers.ImportFileError as exc:
                raise CommandError(f"{exc}; pass LABEL_COL=... or LABELS=a,b") from exc
        try:
            with transaction.atomic():
                return projects.project_create(
                    name=name, labels=label_names, description=f"Demo project over {dataset}."
                )
        except ValidationError as exc:
            raise CommandError(f"cannot create project {name!r}: {exc.messages}") from exc

    def _import(self, project: Project, dataset: str, opts: dict[str, Any]) -> None:
        limit = opts["limit"]
        if dataset in ("rt-snippets", "trec"):
            _, records = _builtin_records(dataset)
            if limit:
                # A seeded sample, not the head of the file (which may be sorted by label).
                records = random.Random(0).sample(records, min(limit, len(records)))
            report = imports.import_records(project=project, records=records,
                                            text_col="text", label_col="label", external_id_col="id")
        else:
            label_col = opts["label_col"]
            if label_col is None and not opts["labels"]:
                label_col = "label"
            try:
                report = imports.import_file(project=project, path=dataset, text_col=opts["text_col"],
                                             label_col=label_col)
            except import_readers.ImportFileError as exc:
                raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"project {project.name!r}: imported {report.imported:,} documents "
            f"({report.duplicates:,} duplicates, {report.rejected:,} rejected)"
        )
