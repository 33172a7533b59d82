"""Keep PostgreSQL's planner statistics fresh after bulk writes.

Right after 100,000 documents and predictions were bulk-loaded, before autovacuum's ANALYZE, the
queue query took ~470 ms instead of ~2 ms: the planner estimated 65 unlabeled pool documents
instead of 88,774 and walked every one of them (docs/BENCHMARKS.md). A bulk import and a scoring pass
(at each continuation and at its end: at 1,000,000 documents a first scoring is many continuations
long) therefore refresh the statistics of the tables they filled. ANALYZE samples a fixed number of
rows (about 30,000), so it costs well under a second even at millions of rows.
"""

from __future__ import annotations

import logging

from django.db import connection
from django.db.models import Model

log = logging.getLogger(__name__)

#: A write of at least this many rows refreshes the statistics; smaller ones leave it to autovacuum.
ANALYZE_AFTER_ROWS = 5_000


def planner_statistics_refresh(*, model: type[Model], rows_written: int) -> bool:
    """ANALYZE ``model``'s table on PostgreSQL after ``rows_written`` rows; True when it ran."""
    if connection.vendor != "postgresql" or rows_written < ANALYZE_AFTER_ROWS:
        return False
    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {table}")
    log.info("analyzed %s after %s rows", model._meta.db_table, rows_written)
    return True
