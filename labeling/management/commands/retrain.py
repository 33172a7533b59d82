"""``manage.py retrain PROJECT [--sync]``: request a training run by hand (name or id)."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from labeling.models import Project, RunStatus, RunTrigger, TrainingRun
from labeling.selectors.models import training_run_open
from labeling.services import scoring
from labeling.services.training.runs import training_run_execute
from labeling.services.training.triggers import training_run_request


class Command(BaseCommand):
    help = "Retrain a project's model now (queued for the workers, or inline with --sync)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project name or id")
        parser.add_argument(
            "--sync", action="store_true", help="run here, print each stage, re-score the pool"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = self._project(options["project"])
        already_open = training_run_open(project_id=project.pk) is not None
        run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
        if already_open:
            self.stdout.write(f"run {run.pk} is already {run.status}; this request was counted on it")
        if not options["sync"]:
            self.stdout.write(
                f"run {run.pk} queued; watch it in the admin or GET /api/v1/projects/{project.pk}/"
            )
            return
        self._run_inline(run)

    def _project(self, ref: str) -> Project:
        project = Project.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        project = project or Project.objects.filter(name=ref).first()
        if project is None:
            raise CommandError(f"no project named or numbered {ref!r}")
        return project

    def _run_inline(self, run: TrainingRun) -> None:
        stop = threading.Event()
        watcher = threading.Thread(target=self._watch, args=(run.pk, stop), daemon=True)
        watcher.start()
        try:
            result = training_run_execute(run_id=run.pk)
        finally:
            stop.set()
            watcher.join()
        if result is None:
            raise CommandError(f"run {run.pk} is being executed by a worker; watch it in the admin")
        if result.status == RunStatus.FAILED:
            raise CommandError(f"run {run.pk} failed: {result.error}")
        self.stdout.write(f"decision: {result.decision_reason}")
        if result.promoted and result.model_version_id is not None:
            started = time.monotonic()
            report = scoring.model_version_rescore(run_id=run.pk, model_version_id=result.model_version_id)
            self.stdout.write(
                f"rescore: {report.scored} documents in {report.batches} batches, "
                f"{time.monotonic() - started:.1f} s"
            )
        result.refresh_from_db()
        mv = result.model_version
        if mv is not None:
            m = mv.metrics
            self.stdout.write(
                f"v{mv.version} {mv.status}: {mv.train_label_count} labels, holdout accuracy "
                f"{m.get('accuracy')}, ece {m.get('ece')} (n={m.get('holdout_count')})"
            )
        self.stdout.write(self.style.SUCCESS(f"run {run.pk} {result.status}"))

    def _watch(self, run_id: int, stop: threading.Event) -> None:
        """Print stage changes from a second connection while the run executes."""
        last = ("", -1)
        try:
            while not stop.wait(0.5):
                row = TrainingRun.objects.filter(pk=run_id).values_list("stage", "progress").first()
                if row is None:  # not visible to this connection (yet)
                    continue
                stage, progress = row
                bucket = int(progress * 10)
                if (stage, bucket) != last:
                    self.stdout.write(f"  {time.strftime('%H:%M:%S')} {stage:<10} {progress:4.0%}")
                    last = (stage, bucket)
        finally:
            connections.close_all()  # this thread's connection only
