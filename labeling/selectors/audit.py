"""Audit log reads: filtered lists (newest first) and the CSV / JSONL exports, streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import QuerySet

from labeling.models import AuditEvent
from labeling.selectors.exports import spreadsheet_safe

#: The columns of the CSV export and the keys of each JSONL line.
COLUMNS = (
    "id",
    "created_at",
    "action",
    "actor_id",
    "actor_name",
    "project_id",
    "project_name",
    "target_type",
    "target_id",
    "target_repr",
    "data",
)
_CHUNK_ROWS = 500


@dataclass(frozen=True)
class AuditFilters:
    """Every filter is optional; those given are ANDed."""

    project_id: int | None = None
    action: str | None = None
    actor: str | None = None  # the username at the time
    actor_id: int | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    target_type: str | None = None
    target_id: str | None = None


def audit_event_list(*, filters: AuditFilters) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    if filters.project_id is not None:
        events = events.filter(project_id=filters.project_id)
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.actor:
        events = events.filter(actor_name=filters.actor)
    if filters.actor_id is not None:
        events = events.filter(actor_id=filters.actor_id)
    if filters.since is not None:
        events = events.filter(created_at__gte=filters.since)
    if filters.until is not None:
        events = events.filter(created_at__lt=filters.until)
    if filters.target_type:
        events = events.filter(target_type=filters.target_type)
    if filters.target_id:
        events = events.filter(target_id=filters.target_id)
    return events.order_by("-created_at", "-id")


def audit_row(event: AuditEvent) -> dict[str, Any]:
    return {column: getattr(event, column) for column in COLUMNS}


def _rows(events: QuerySet[AuditEvent]) -> Iterable[dict[str, Any]]:
    return (audit_row(event) for event in events.iterator(chunk_size=2000))


def audit_jsonl_chunks(events: QuerySet[AuditEvent]) -> Iterator[bytes]:
    buffer: list[str] = []
    for row in _rows(events):
        buffer.append(json.dumps(row, cls=DjangoJSONEncoder, ensure_ascii=False))
        if len(buffer) >= _CHUNK_ROWS:
            yield ("\n".join(buffer) + "\n").encode()
            buffer = []
    if buffer:
        yield ("\n".join(buffer) + "\n").encode()


def audit_csv_chunks(events: QuerySet[AuditEvent]) -> Iterator[bytes]:
    """One row per event, ``data`` as a JSON cell; every text cell spreadsheet-safe (like the label export)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for i, row in enumerate(_rows(events), start=1):
        row["created_at"] = row["created_at"].isoformat()
        row["data"] = json.dumps(row["data"], ensure_ascii=False, sort_keys=True)
        writer.writerow({key: spreadsheet_safe(value) for key, value in row.items()})
        if i % _CHUNK_ROWS == 0:
            yield out.getvalue().encode()
            out.seek(0)
            out.truncate()
    yield out.getvalue().encode()
