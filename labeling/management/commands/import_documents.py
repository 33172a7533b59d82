"""``manage.py import_documents PROJECT FILE --text-col text [--label-col label] [--labels-as training]``.

``--labels-as gold`` (the default) keeps the label column as evaluation-only gold labels;
``--labels-as training`` stores each as an annotation with source ``import`` (see
``labeling.services.import_rows``), and ``--source-col`` records a per-row source with it.

FILE is a CSV/TSV, JSON Lines or Parquet file, a folder written by ``datasets.save_to_disk``, or
(where a network exists) a Hugging Face hub dataset name. PROJECT is a project name or id.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import LabelsAs, Project
from labeling.services.import_readers import FORMATS, ImportFileError
from labeling.services.imports import import_file


class Command(BaseCommand):
    help = "Import documents (and optional gold labels) from a file into a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project name or id")
        parser.add_argument("file", help="CSV/TSV, JSONL, Parquet, a save_to_disk folder or a hub name")
        parser.add_argument("--text-col", default="text")
        parser.add_argument("--label-col", default=None, help="the label column (see --labels-as)")
        parser.add_argument("--labels-as", choices=LabelsAs.values, default=LabelsAs.GOLD,
                            help="gold: evaluation only, kept apart from annotations (default); "
                            "training: annotations with source import")
        parser.add_argument("--source-col", default=None, help="with --labels-as training: each label's source")
        parser.add_argument("--annotator-col", default=None,
                            help="with --labels-as training: the username of the project member who gave each label")
        parser.add_argument("--prediction-col", default=None,
                            help="an external model's label: a suggestion on the labeling page, never trained on")
        parser.add_argument("--prediction-score-col", default=None, help="its score, 0-1")
        parser.add_argument("--external-id-col", default=None)
        parser.add_argument("--format", choices=FORMATS, default=None, help="default: from the file name")

    def handle(self, *args: Any, **opts: Any) -> None:
        ref = opts["project"]
        project = Project.objects.filter(name=ref).first()
        if project is None and str(ref).isdigit():
            project = Project.objects.filter(pk=int(ref)).first()
        if project is None:
            raise CommandError(f"no project named {ref!r}")

        def progress(rows: int, total: int | None) -> None:
            of = f"/{total:,}" if total else ""
            sys.stderr.write(f"\r{rows:,}{of} rows read")
            sys.stderr.flush()

        try:
            report = import_file(
                project=project, path=opts["file"], fmt=opts["format"], text_col=opts["text_col"],
                label_col=opts["label_col"], external_id_col=opts["external_id_col"], progress=progress,
                labels_as=opts["labels_as"], source_col=opts["source_col"], prediction_col=opts["prediction_col"],
                prediction_score_col=opts["prediction_score_col"], annotator_col=opts["annotator_col"],
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write("\n")
        self.stdout.write(
            f"{report.rows_total:,} rows: {report.imported:,} imported, {report.duplicates:,} duplicates, "
            f"{report.rejected:,} rejected"
        )
        if opts["labels_as"] == LabelsAs.TRAINING:
            self.stdout.write(f"{report.labeled:,} training labels stored (holdout documents keep theirs as gold)")
        for item in report.rejected_rows[:20]:
            self.stdout.write(f"  row {item['row']}: {item['reason']}")
        if report.rejected > 20:
            self.stdout.write(f"  ... and {report.rejected - 20:,} more")
