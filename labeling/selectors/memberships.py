"""Project membership reads: the members of a project and the audit trail of changes to them."""

from __future__ import annotations

from django.db.models import QuerySet

from labeling.models import MembershipChange, Project, ProjectMembership


def membership_list(*, project: Project) -> QuerySet[ProjectMembership]:
    return (
        ProjectMembership.objects.filter(project=project)
        .select_related("user", "created_by")
        .order_by("role", "user__username")
    )


def membership_change_list(*, project: Project, limit: int = 200) -> QuerySet[MembershipChange]:
    """The newest ``limit`` changes first."""
    return MembershipChange.objects.filter(project=project).select_related("member", "changed_by")[:limit]
