"""Project membership reads: the members of a project and the audit trail of changes to them."""

from __future__ import annotations

from django.db.models import QuerySet

from labeling.models import MEMBERSHIP_AUDIT_ACTIONS, AuditEvent, Project, ProjectMembership


def membership_list(*, project: Project) -> QuerySet[ProjectMembership]:
    return (
        ProjectMembership.objects.filter(project=project)
        .select_related("user", "created_by")
        .order_by("role", "user__username")
    )


def membership_change_list(*, project: Project, limit: int = 200) -> QuerySet[AuditEvent]:
    """The project's membership events of the audit log, the newest ``limit`` first."""
    return AuditEvent.objects.filter(project_id=project.pk, action__in=list(MEMBERSHIP_AUDIT_ACTIONS)).order_by(
        "-created_at", "-id"
    )[:limit]
