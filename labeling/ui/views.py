"""Annotator pages and the project dashboard: thin views over selectors, plus small JSON reads.

Writes (labels, skips, leases, retrains, promotions) go through the REST API from the page's
JavaScript; the JSON endpoints here only cover reads the API does not offer in the shape a page needs.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labeling import roles
from labeling.labelspace import SET_SEPARATOR
from labeling.models import (
    ACCEPT_SUGGESTION_KEY,
    COMMENT_KEYS,
    PAGE_KEYS,
    AcquisitionStrategy,
    Document,
    FlagKind,
    Prediction,
    Project,
    ReviewReason,
)
from labeling.selectors import dashboard as dash
from labeling.selectors.documents import is_blind, visible_annotations
from labeling.selectors.guidelines import guidelines_get
from labeling.selectors.models import champion_get
from labeling.selectors.review import review_summary
from labeling.services import coldstart
from labeling.services.modeling import prediction_attributions_request
from labeling.ui.access import nav_links, project_json, project_page

logger = logging.getLogger(__name__)


class LoginView(auth_views.LoginView):
    template_name = "ui/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # Single sign-on, where configured, is offered beside the local form (labeling.ui.sso).
        context = super().get_context_data(**kwargs)
        context["sso_provider"] = settings.OIDC_PROVIDER_NAME if settings.OIDC_ENABLED else ""
        context["sso_failed"] = self.request.GET.get("sso") == "failed"
        return context


class LogoutView(auth_views.LogoutView):
    pass


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    projects = roles.visible_projects(request.user, roles.ANNOTATE).annotate(
        n_docs=Count("documents", distinct=True),
        n_labeled=Count("documents", filter=Q(documents__is_labeled=True), distinct=True),
    ).order_by("name")
    rows = [
        {
            "project": p,
            "champion": champion_get(project_id=p.pk),
            "can_review": roles.can(request.user, roles.REVIEW, p.pk),
        }
        for p in projects
    ]
    return render(request, "ui/project_list.html", {"rows": rows})


@project_page(roles.ANNOTATE)
@require_GET
def label(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    config = {
        "project": {"id": project.pk, "name": project.name, "lease_minutes": project.lease_minutes},
        "labels": _label_buttons(project),
        "keys": {"skip": PAGE_KEYS["skip"], "undo": PAGE_KEYS["undo"]},
        "progress": dash.labeling_progress(project=project, user=request.user),
        # The "chosen by" line names them as declared.
        "strategies": {**dict(AcquisitionStrategy.choices), **coldstart.STRATEGY_NAMES},
        "accept_suggestion_key": ACCEPT_SUGGESTION_KEY,
        **_answer_config(project),
    }
    return render(
        request, "ui/label.html",
        {"project": project, "config": config, "guidelines": guidelines_get(project=project),
         "flag_kinds": FlagKind.choices, **nav_links(request.user, project.pk)},
    )


def _answer_config(project: Project) -> dict[str, object]:
    """How the pages answer: one label per key press, or (multi-label) keys toggle a set that Enter confirms."""
    return {
        "task_type": project.task_type,
        "multi": project.label_space.answer_field == "labels",
        "set_separator": SET_SEPARATOR,
    }


def _label_buttons(project: Project) -> list[dict[str, str]]:
    return [
        {"name": item["name"], "text": item.get("text") or item["name"], "key": item.get("key", "")}
        for item in project.labels
    ]


@project_page(roles.REVIEW)
@require_GET
def review(request: HttpRequest, pk: int) -> HttpResponse:
    """The review page: the item, decisions and comments come from the review API (/api/v1/.../review/)."""
    project = get_object_or_404(Project, pk=pk)
    labels = _label_buttons(project)
    # The comment key is not reserved for labels (only PAGE_KEYS are), so it steps aside for one.
    taken = {item["key"] for item in labels}
    comment_key = next(key for key in COMMENT_KEYS if key not in taken)
    config = {
        "project": {"id": project.pk, "name": project.name, "lease_minutes": project.lease_minutes},
        "labels": labels,
        "keys": {"skip": PAGE_KEYS["skip"], "comment": comment_key},
        "reasons": dict(ReviewReason.choices),
        "summary": review_summary(project=project),
        **_answer_config(project),
    }
    return render(
        request, "ui/review.html",
        {"project": project, "config": config, "guidelines": guidelines_get(project=project),
         **nav_links(request.user, project.pk)},
    )


@project_page(roles.ANNOTATE)
@require_GET
def dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    # "is_admin" in the page means "may run this project": staff or the project's manager.
    links = nav_links(request.user, project.pk)
    manages = links["can_manage"]
    return render(
        request, "ui/dashboard.html",
        {"project": project, "is_admin": manages, **links, "config": {"project": project.pk, "is_admin": manages},
         "guidelines": guidelines_get(project=project) if manages else None},
    )


@project_page(roles.ANNOTATE)
@require_GET
def document_detail(request: HttpRequest, pk: int, doc_id: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    document = get_object_or_404(Document, pk=doc_id, project=project)
    champion = champion_get(project_id=project.pk)
    prediction = (
        Prediction.objects.filter(document=document, model_version=champion).first() if champion else None
    )
    # The same labels the API shows this user: everyone's for managers and reviewers, else their own.
    annotations = (
        visible_annotations(project=project, user=request.user).filter(document=document)
        .select_related("annotator").prefetch_related("revisions").order_by("pk")
    )
    return render(
        request, "ui/document.html",
        {"project": project, "document": document, "blind": is_blind(document),
         "prediction": None if is_blind(document) else prediction, "champion": champion,
         "annotations": annotations, **nav_links(request.user, project.pk)},
    )


@project_json(roles.ANNOTATE)
@require_GET
def progress_json(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    return JsonResponse(dash.labeling_progress(project=project, user=request.user))


@project_json(roles.ANNOTATE)
@require_GET
def dashboard_json(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    # Annotator quality is for the people who run the project, never in an annotator's JSON.
    manages = roles.can(request.user, roles.MANAGE, project.pk)
    return JsonResponse(
        dash.dashboard(project=project, user=request.user, include_quality=manages, include_flags=manages)
    )


def _attributions_allowed(user_id: int, project_id: int) -> bool:
    """At most ATTRIBUTIONS_PER_MINUTE new highlight computations per user and project (a fixed minute window)."""
    key = f"alabel:attributions:{user_id}:{project_id}:{int(time.time() // 60)}"
    cache.add(key, 0, timeout=120)
    return cache.incr(key) <= settings.ATTRIBUTIONS_PER_MINUTE


@project_json(roles.ANNOTATE)
@require_GET
def attributions_json(request: HttpRequest, pk: int, doc_id: int) -> HttpResponse:
    """Token highlights for the champion's prediction of one document of this project.

    Stored highlights answer 200. Otherwise a worker computes them (integrated gradients take
    seconds of encoder time, never spent in a web request): 202 ``computing``, ask again shortly.
    """
    document = get_object_or_404(Document, pk=doc_id, project_id=pk)
    if is_blind(document):
        return JsonResponse({"detail": "Holdout items are labeled blind."}, status=409)
    champion = champion_get(project_id=document.project_id)
    prediction = (
        Prediction.objects.filter(document=document, model_version=champion).first() if champion else None
    )
    if prediction is None:
        return JsonResponse({"detail": "The current model has not scored this document yet."}, status=404)
    if prediction.attributions is None and not _attributions_allowed(request.user.pk, pk):
        response = JsonResponse({"detail": "Too many highlight requests: try again in a minute."}, status=429)
        response["Retry-After"] = "60"
        return response
    tokens = prediction_attributions_request(prediction=prediction)
    if tokens is None:
        response = JsonResponse({"status": "computing", "detail": "Computing highlights…"}, status=202)
        response["Retry-After"] = "2"
        return response
    return JsonResponse(
        {"status": "ready", "document": document.pk, "version": champion.version if champion else None,
         "label": prediction.predicted_label, "tokens": tokens}
    )
