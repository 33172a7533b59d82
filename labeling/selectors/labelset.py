"""Reads of a project's label-set history (``LabelSetVersion``; written by ``labeling.services.labelset``)."""

from __future__ import annotations

from collections import Counter

from django.db.models import Count

from labeling.models import Annotation, LabelSetOperation, LabelSetVersion, Project


def label_set_versions(*, project: Project) -> list[LabelSetVersion]:
    """Every version of the project's label set, oldest first.

    A project whose set never changed has no stored row: its one version is its current labels.
    """
    versions = list(LabelSetVersion.objects.filter(project=project).select_related("created_by").order_by("version"))
    if not versions:
        versions = [
            LabelSetVersion(
                project=project,
                version=project.label_set_version,
                labels=project.labels,
                operation=LabelSetOperation.INITIAL,
                created_at=project.created_at,
            )
        ]
    return versions


def label_set_usage(*, project: Project) -> dict[str, int]:
    """{label: annotations with it} over the project, retired labels included (their annotations stay).

    A multi-label answer counts once for each label its set holds.
    """
    space = project.label_space
    rows = Annotation.objects.filter(project=project).values("label").annotate(n=Count("id"))
    usage: Counter[str] = Counter()
    for row in rows:
        for name in space.as_names(row["label"]):
            usage[name] += row["n"]
    return dict(usage)
