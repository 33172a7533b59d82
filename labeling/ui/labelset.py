"""The label-set page: a project's managers (and staff) add, rename, retire, merge and split labels.

Like the members page: a server-rendered form posting back to the page (CSRF-protected), through the
same services as the API (``/api/v1/projects/{p}/labelset/...``), so every change is versioned,
audited and followed by the same migrations, review re-checks and retrain. Success redirects with
what happened (no double post on reload); a refused change re-renders the page with the reason and a 400.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from labeling import roles
from labeling.models import Project
from labeling.selectors.labelset import label_set_usage, label_set_versions
from labeling.services.labelset import (
    LabelSetChange,
    labelset_add,
    labelset_merge,
    labelset_rename,
    labelset_retire,
    labelset_split,
)
from labeling.ui.access import project_page

ACTIONS = ("add", "rename", "retire", "merge", "split")


def _optional(request: HttpRequest, name: str) -> str | None:
    value = request.POST.get(name, "").strip()
    return value or None


def _change(request: HttpRequest, project: Project, action: str) -> LabelSetChange:
    post, by = request.POST, request.user
    if action == "add":
        return labelset_add(
            project=project,
            name=post.get("name", "").strip(),
            text=_optional(request, "text"),
            key=_optional(request, "key"),
            by=by,
        )
    if action == "rename":
        return labelset_rename(
            project=project,
            label=post.get("label", ""),
            new_name=post.get("new_name", "").strip(),
            text=_optional(request, "text"),
            by=by,
        )
    if action == "retire":
        return labelset_retire(project=project, label=post.get("label", ""), by=by)
    if action == "merge":
        return labelset_merge(project=project, labels=post.getlist("labels"), into=post.get("into", ""), by=by)
    new_labels = [name.strip() for name in post.get("new_labels", "").split(",") if name.strip()]
    return labelset_split(project=project, label=post.get("label", ""), new_labels=new_labels, by=by)


def _apply(request: HttpRequest, project: Project) -> str:
    """Perform the posted change; returns what happened, in words. Raises ValidationError when refused."""
    action = request.POST.get("action", "")
    if action not in ACTIONS:
        raise ValidationError({"action": f"choose one of {', '.join(ACTIONS)}"})
    change = _change(request, project, action)
    data = change.version.data
    done = {
        "add": lambda: f"Added {data.get('label')}.",
        "rename": lambda: f"Renamed {data.get('label')} to {data.get('new_name')}.",
        "retire": lambda: f"Retired {data.get('label')}.",
        "merge": lambda: f"Merged {', '.join(data.get('labels', []))} into {data.get('into')}.",
        "split": lambda: f"Split {data.get('label')} into {', '.join(data.get('new_labels', []))}.",
    }[action]()
    parts = [done, f"Label set version {change.version.version}."]
    if change.migrated:
        parts.append(f"{change.migrated} labels moved.")
    if change.reopened:
        parts.append(f"{change.reopened} documents sent back to the queue.")
    if change.review_closed:
        parts.append(f"{change.review_closed} review items closed: their disagreement is gone.")
    if change.run is not None:
        parts.append("A retrain was requested.")
    return " ".join(parts)


@project_page(roles.MANAGE)
@require_http_methods(["GET", "POST"])
def labelset(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    errors: list[str] = []
    if request.method == "POST":
        try:
            done = _apply(request, project)
        except ValidationError as exc:
            errors = [f"{field}: {'; '.join(msgs)}" for field, msgs in exc.message_dict.items()]
            project.refresh_from_db()  # the change was rolled back: show the set as it is
        else:
            return redirect(f"{request.path}?done={done}")
    usage = label_set_usage(project=project)
    context = {
        "project": project,
        "labels": [{**item, "annotations": usage.get(item["name"], 0)} for item in project.labels],
        "history": list(reversed(label_set_versions(project=project)))[:50],
        "errors": errors,
        "done": request.GET.get("done", "")[:300],
        "can_manage": True,
        "can_review": True,
    }
    return render(request, "ui/labelset.html", context, status=400 if errors else 200)
