"""The members page: a project's managers (and staff) add, re-role and remove members.

A server-rendered form posting back to the page (CSRF-protected), through the same services as the
API, so every change is audited the same way. Success redirects (no double post on reload); a refused
change re-renders the page with the reason and a 400.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from labeling import roles
from labeling.models import Project, ProjectRole
from labeling.selectors.memberships import membership_change_list, membership_list
from labeling.services.memberships import (
    MembershipNotFoundError,
    membership_add,
    membership_change_role,
    membership_remove,
    user_resolve,
)
from labeling.ui.access import project_page

ACTIONS = ("add", "change", "remove")


def _apply(request: HttpRequest, project: Project) -> str:
    """Perform the posted change; returns what happened, in words. Raises ValidationError when refused."""
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        raise ValidationError({"action": f"choose one of {', '.join(ACTIONS)}"})
    role = request.POST.get("role", "")
    if action == "add":
        user = user_resolve(username=request.POST.get("username", "").strip())
        membership_add(project=project, user=user, role=role, by=request.user)
        return f"{user.username} joined as {role}."
    try:
        user = user_resolve(user_id=int(request.POST.get("user_id", "")))
        if action == "change":
            membership_change_role(project=project, user=user, role=role, by=request.user)
            return f"{user.username} is now {role}."
        membership_remove(project=project, user=user, by=request.user)
        return f"{user.username} was removed."
    except (ValueError, MembershipNotFoundError):
        raise ValidationError({"user_id": "not a member of this project"}) from None


@project_page(roles.MANAGE)
@require_http_methods(["GET", "POST"])
def members(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            done = _apply(request, project)
        except ValidationError as exc:
            errors = [f"{field}: {'; '.join(msgs)}" for field, msgs in exc.message_dict.items()]
        else:
            return redirect(f"{request.path}?done={done}")
    context = {
        "project": project,
        "members": membership_list(project=project),
        "changes": membership_change_list(project=project, limit=50),
        "roles": ProjectRole.choices,
        "errors": errors,
        "done": request.GET.get("done", "")[:200],
        "can_manage": True,
        "can_review": True,
    }
    return render(request, "ui/members.html", context, status=400 if errors else 200)
