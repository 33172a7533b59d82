"""manage.py embedding_cache_compact [FILE ...]: rewrite embedding cache files with 16 KiB pages.

A cache file made before the page size was set (SQLite's default 4 KiB pages) keeps working, but each
768-float vector spills to an overflow page: ~4.8 KB a row instead of ~3.4 KB, and reads take ~1.8x as
long. Run with this host's workers stopped (the rewrite needs the file to itself; a file in use is
reported and left as it was). Without FILE: every ``*.sqlite3`` in ``EMBEDDING_CACHE_DIR``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from modelsvc.encoder import EmbeddingCache


class Command(BaseCommand):
    help = "Rewrite embedding cache files with 16 KiB pages (workers on this host stopped)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="*", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        files = options["files"] or sorted(Path(settings.EMBEDDING_CACHE_DIR).glob("*.sqlite3"))
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CommandError(f"no such cache file: {', '.join(missing)}")
        busy = []
        for path in files:
            size = path.stat().st_size
            cache = EmbeddingCache(path)
            try:
                before, after = cache.compact()
                vectors = len(cache)
            except sqlite3.OperationalError as exc:
                busy.append(f"{path.name} ({exc})")
                continue
            finally:
                cache.close()
            self.stdout.write(
                f"{path.name}: {vectors} vectors, pages {before} -> {after} B,"
                f" {size / 2**20:.1f} -> {path.stat().st_size / 2**20:.1f} MiB"
            )
        if busy:
            raise CommandError(f"in use, left as they were (stop the workers and run again): {'; '.join(busy)}")
