"""Project writes: create a project from a label list, change its active-learning policy."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.models import Project, default_label_keys
from labeling.services.documents import text_problem
from labeling.services.overlap import OVERLAP_FIELDS, overlap_apply

# The fields an admin may change after creation; the label set is fixed once labels exist.
POLICY_FIELDS = (
    "description",
    "acquisition_strategy",
    "retrain_after",
    "holdout_fraction",
    "holdout_interleave",
    "lease_minutes",
    "auto_accept_threshold",
    "review_threshold",
    "promotion_tolerance",
    "fine_tune",
    "seed",
    "overlap",
    "overlap_scope",
    "overlap_share",
    "min_agreement",
    "review_audit_share",
    "noise_review_share",
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
def project_create(*, name: str, labels: Any, **policy: Any) -> Project:
    unknown = set(policy) - set(POLICY_FIELDS) - {"task_type"}
    if unknown:
        raise ValidationError({field: "unknown field" for field in sorted(unknown)})
    project = Project(name=name, labels=labels_normalize(labels), **policy)
    _full_clean(project)
    project.save()
    return project


@transaction.atomic
def project_update_policy(*, project: Project, **fields: Any) -> Project:
    unknown = set(fields) - set(POLICY_FIELDS)
    if unknown:
        raise ValidationError({field: "cannot be changed here" for field in sorted(unknown)})
    locked = Project.objects.select_for_update().get(pk=project.pk)
    before = {field: getattr(locked, field) for field in OVERLAP_FIELDS}
    for field, value in fields.items():
        setattr(locked, field, value)
    _full_clean(locked)
    locked.save(update_fields=list(fields) or None)
    if any(getattr(locked, field) != old for field, old in before.items()):
        overlap_apply(project=locked)
    return locked
