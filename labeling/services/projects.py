"""Project writes: create a project from a label list, change its active-learning policy, delete it (audited)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.models import Annotation, AuditAction, Project, default_label_keys
from labeling.services.audit import audit_changes, audit_record
from labeling.services.documents import text_problem
from labeling.services.overlap import OVERLAP_FIELDS, overlap_apply

# The fields an admin may change after creation; the label set is fixed once labels exist.
POLICY_FIELDS = (
    "description",
    "acquisition_strategy",
    "retrain_after",
    "holdout_fraction",
    "holdout_interleave",
    "random_share",
    "lease_minutes",
    "auto_accept_threshold",
    "review_threshold",
    "promotion_tolerance",
    "fine_tune",
    "model_features",
    "deep_tier_every",
    "deep_tier",
    "deep_tier_budget_s",
    "seed",
    "overlap",
    "overlap_scope",
    "overlap_share",
    "min_agreement",
    "review_audit_share",
    "noise_review_share",
    "noise_hold_flagged",
)


def labels_normalize(labels: Any) -> list[dict[str, str]]:
    """Accept ``["a", "b"]`` or ``[{name, text?, key?}]``; return the stored ``[{name, text, key}]``."""
    if not isinstance(labels, list) or not labels:
        raise ValidationError({"labels": "must be a non-empty list of names or {name, text, key} objects"})
    if all(isinstance(item, str) for item in labels):
        return default_label_keys(list(labels))
    normalized: list[dict[str, str]] = []
    for i, item in enumerate(labels):
        if not isinstance(item, dict):
            raise ValidationError({"labels": f"labels[{i}] must be a string or an object"})
        unknown = set(item) - {"name", "text", "key"}
        if unknown:
            raise ValidationError({"labels": f"labels[{i}] has unknown fields {sorted(unknown)}"})
        name = item.get("name")
        text = item.get("text", name)
        if isinstance(text, str) and (problem := text_problem(text, max_chars=200)):
            raise ValidationError({"labels": f"labels[{i}].text {problem}"})
        normalized.append({"name": name, "text": text, "key": item.get("key", "")})
    return normalized


def _full_clean(project: Project) -> None:
    # Field validators plus Project.clean(); the message dict becomes the API's "fields".
    project.full_clean(exclude=["created_at"])


@transaction.atomic
def project_create(*, name: str, labels: Any, by: Any = None, **policy: Any) -> Project:
    unknown = set(policy) - set(POLICY_FIELDS) - {"task_type"}
    if unknown:
        raise ValidationError({field: "unknown field" for field in sorted(unknown)})
    project = Project(name=name, labels=labels_normalize(labels), **policy)
    _full_clean(project)
    project.save()
    audit_record(
        actor=by, action=AuditAction.PROJECT_CREATED, project=project, target=project,
        data={"labels": [label["name"] for label in project.labels], "task_type": project.task_type, **policy},
    )
    return project


@transaction.atomic
def project_update_policy(*, project: Project, by: Any = None, **fields: Any) -> Project:
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError({field: "cannot be changed here" for field in sorted(unknown)})
    locked = Project.objects.select_for_update().get(pk=project.pk)
    before = {field: getattr(locked, field) for field in POLICY_FIELDS}
    for field, value in fields.items():
        setattr(locked, field, value)
    _full_clean(locked)
    locked.save(update_fields=list(fields) or None)
    if any(getattr(locked, field) != before[field] for field in OVERLAP_FIELDS):
        overlap_apply(project=locked)
    changes = audit_changes(before=before, after={field: getattr(locked, field) for field in fields})
    if changes:  # a PATCH that changes nothing records nothing
        audit_record(actor=by, action=AuditAction.PROJECT_UPDATED, project=locked, target=locked, data=changes)
    return locked


@transaction.atomic
def project_record_admin_save(*, project: Project, before: dict[str, Any] | None, by: Any = None) -> None:
    """Record a save through the Django admin's form: ``before`` holds the changed fields' old values (None: added)."""
    if before is None:
        data = {"labels": [label["name"] for label in project.labels], "task_type": project.task_type}
        audit_record(actor=by, action=AuditAction.PROJECT_CREATED, project=project, target=project, data=data)
        return
    changes = audit_changes(before=before, after={field: getattr(project, field) for field in before})
    if changes:
        audit_record(actor=by, action=AuditAction.PROJECT_UPDATED, project=project, target=project, data=changes)


@transaction.atomic
def project_delete(*, project: Project, by: Any = None) -> None:
    """Delete the project and everything in it; its audit events stay (they hold its id and name, no key)."""
    locked = Project.objects.select_for_update().get(pk=project.pk)
    counts = {
        "documents": locked.documents.count(),
        "labels": Annotation.objects.filter(project=locked).count(),
        "members": locked.memberships.count(),
    }
    audit_record(actor=by, action=AuditAction.PROJECT_DELETED, project=locked, target=locked, data=counts)
    locked.delete()
