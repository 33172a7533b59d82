"""Who may open a page: the same membership rules as the API (labeling/roles.py).

Pages: anonymous -> the sign-in page; a non-member of the project in the URL (``pk``) -> 404, so the
page does not reveal that the project exists; a member whose role lacks the capability -> 403.
JSON reads answer the same as JSON (401 / 404 / 403): a page's fetch gets a status, not a login form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from labeling import roles

View = Callable[..., HttpResponse]

_NEEDS = {
    roles.ANNOTATE: "the annotator, reviewer or manager role in this project",
    roles.MANAGE: "the manager role in this project",
    roles.REVIEW: "the reviewer or manager role in this project",
}


def nav_links(user: Any, project_id: int) -> dict[str, bool]:
    """Which role-only links the project nav shows this user (the pages themselves check again)."""
    return {
        "can_manage": roles.can(user, roles.MANAGE, project_id),
        "can_review": roles.can(user, roles.REVIEW, project_id),
    }


def project_page(capability: frozenset[str]) -> Callable[[View], View]:
    """Signed in, a member of project ``pk``, holding ``capability`` (staff pass)."""

    def decorate(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            project_id = kwargs["pk"]
            if not roles.is_member(request.user, project_id):
                raise Http404(f"project {project_id} does not exist")
            if not roles.can(request.user, capability, project_id):
                raise PermissionDenied(f"You need {_NEEDS.get(capability, 'another role')} to use this page.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def project_json(capability: frozenset[str]) -> Callable[[View], View]:
    """``project_page`` for the JSON reads a page's script fetches."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return JsonResponse({"detail": "Your session ended: sign in again."}, status=401)
            project_id = kwargs["pk"]
            if not roles.is_member(request.user, project_id):
                return JsonResponse({"detail": f"project {project_id} does not exist"}, status=404)
            if not roles.can(request.user, capability, project_id):
                return JsonResponse({"detail": f"You need {_NEEDS.get(capability, 'another role')}."}, status=403)
            return view(request, *args, **kwargs)

        return wrapped

    return decorate
