"""The audit log: one append-only ``AuditEvent`` per audited change, written inside the change's transaction.

``audit_record`` is called by the service that makes the change, in the same database transaction, so
there is no change without its record and no record of a change that rolled back. What is recorded
(``AuditAction``) and why is in docs/SECURITY.md ("Audit log"). Values whose field name looks like a
secret are never stored, only the fact that they changed.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Model

from labeling.models import (
    Annotation,
    AuditAction,
    AuditEvent,
    ImportJob,
    ModelVersion,
    Project,
    ReviewItem,
    TrainingRun,
)

# A field whose name contains one of these is a secret: its values never reach the log.
SECRET_HINTS = ("secret", "password", "token", "api_key", "private")
REDACTED = "[redacted]"

_TARGET_TYPES: dict[type[Model], str] = {
    Project: "project",
    ModelVersion: "model_version",
    Annotation: "annotation",
    ReviewItem: "review_item",
    TrainingRun: "training_run",
    ImportJob: "import_job",
}


class AuditOutsideTransactionError(RuntimeError):
    """``audit_record`` was called outside a transaction: the record could outlive a rolled-back change."""


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in SECRET_HINTS)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (REDACTED if is_secret(str(k)) else _redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def audit_changes(*, before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{field: {"old", "new"}}`` for the fields whose value differs; a secret field shows neither value."""
    changes: dict[str, dict[str, Any]] = {}
    for field, new in after.items():
        old = before.get(field)
        if old != new:
            changes[field] = {"old": REDACTED, "new": REDACTED} if is_secret(field) else {"old": old, "new": new}
    return changes


def _describe(target: Any) -> tuple[str, str, str]:
    """(type, id, readable name) of a model instance."""
    if target is None:
        return "", "", ""
    if isinstance(target, Model) and type(target) in _TARGET_TYPES:
        kind = _TARGET_TYPES[type(target)]
        if isinstance(target, ModelVersion):
            name = f"v{target.version}"
        elif isinstance(target, Project):
            name = target.name
        else:
            name = f"{kind.replace('_', ' ')} {target.pk}"
        return kind, str(target.pk), name[:200]
    if hasattr(target, "get_username"):  # a user
        return "user", str(target.pk), target.get_username()[:200]
    raise TypeError(f"no audit target type for {type(target).__name__}")


def audit_record(
    *,
    actor: Any,
    action: str,
    project: Project | None = None,
    target: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Record ``action`` by ``actor`` (a user; None for a command or the beat) on ``target`` in ``project``.

    Must run inside the transaction of the change it records (``AuditOutsideTransactionError`` otherwise).
    """
    if not transaction.get_connection().in_atomic_block:
        raise AuditOutsideTransactionError(f"{action}: record it inside the change's transaction")
    authenticated = actor is not None and getattr(actor, "is_authenticated", False)
    target_type, target_id, target_repr = _describe(target)
    # Plain JSON now (datetimes as ISO strings), so what is read back is what was written.
    payload = json.loads(json.dumps(_redact(data or {}), cls=DjangoJSONEncoder))
    return AuditEvent.objects.create(
        action=action,
        actor_id=actor.pk if authenticated else None,
        actor_name=actor.get_username() if authenticated else "",
        project_id=project.pk if project is not None else None,
        project_name=project.name if project is not None else "",
        target_type=target_type,
        target_id=target_id,
        target_repr=target_repr,
        data=payload,
    )


@transaction.atomic
def export_record(*, project: Project, actor: Any, fmt: str) -> AuditEvent:
    """Record a label export as it starts (the rows: one per annotation, counted now; the stream follows)."""
    rows = Annotation.objects.filter(project=project).count()
    return audit_record(
        actor=actor, action=AuditAction.EXPORT_DOWNLOADED, project=project, target=project,
        data={"format": fmt, "rows": rows},
    )
