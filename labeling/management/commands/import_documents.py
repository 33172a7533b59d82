"""``manage.py import_documents PROJECT FILE --text-col text [--label-col label] [--external-id-col id]``.

FILE is a CSV/TSV, JSON Lines or Parquet file, a folder written by ``datasets.save_to_disk``, or
(where a network exists) a Hugging Face hub dataset name. PROJECT is a project name or id.
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from labeling.models import Project
from labeling.services.imports import FORMATS, ImportFileError, import_file


class Command(BaseCommand):
    help = "Import documents (and optional gold labels) from a file into a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("project", help="project name or id")
        parser.add_argument("file", help="CSV/TSV, JSONL, Parquet, a save_to_disk folder or a hub name")
        parser.add_argument("--text-col", default="text")
        parser.add_argument("--label-col", default=None, help="gold labels, kept apart from annotations")
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
            )
        except ImportFileError as exc:
            raise CommandError(str(exc)) from exc
        sys.stderr.write("\n")
        self.stdout.write(
            f"{report.rows_total:,} rows: {report.imported:,} imported, {report.duplicates:,} duplicates, "
            f"{report.rejected:,} rejected"
        )
        for item in report.rejected_rows[:20]:
            self.stdout.write(f"  row {item['row']}: {item['reason']}")
        if report.rejected > 20:
            self.stdout.write(f"  ... and {report.rejected - 20:,} more")
