"""Annotator pages and the project dashboard: thin views over selectors, plus small JSON reads.

Writes (labels, skips, leases, retrains, promotions) go through the REST API from the page's
JavaScript; the JSON endpoints here only cover reads the API does not offer in the shape a page needs.
"""

from __future__ import annotations

import logging

from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from labeling import roles
from labeling.models import AcquisitionStrategy, Document, Prediction, Project, Split
from labeling.selectors import dashboard as dash
from labeling.selectors.models import champion_get
from labeling.services.modeling import prediction_attributions
from labeling.ui.access import project_json, project_page

logger = logging.getLogger(__name__)


class LoginView(auth_views.LoginView):
    template_name = "ui/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    pass


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    projects = roles.visible_projects(request.user, roles.ANNOTATE).annotate(
        n_docs=Count("documents", distinct=True),
        n_labeled=Count("documents", filter=Q(documents__is_labeled=True), distinct=True),
    ).order_by("name")
    rows = [{"project": p, "champion": champion_get(project_id=p.pk)} for p in projects]
    return render(request, "ui/project_list.html", {"rows": rows})


@project_page(roles.ANNOTATE)
@require_GET
def label(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    config = {
        "project": {"id": project.pk, "name": project.name, "lease_minutes": project.lease_minutes},
        "labels": [
            {"name": item["name"], "text": item.get("text") or item["name"], "key": item.get("key", "")}
            for item in project.labels
        ],
        "progress": dash.labeling_progress(project=project, user=request.user),
        "strategies": dict(AcquisitionStrategy.choices),  # the "chosen by" line names them as declared
    }
    return render(request, "ui/label.html", {"project": project, "config": config})


@project_page(roles.ANNOTATE)
@require_GET
def dashboard(request: HttpRequest, pk: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    # "is_admin" in the page means "may run this project": staff or the project's manager.
    manages = roles.can(request.user, roles.MANAGE, project.pk)
    return render(
        request, "ui/dashboard.html",
        {"project": project, "is_admin": manages, "can_manage": manages,
         "config": {"project": project.pk, "is_admin": manages}},
    )


def _blind(document: Document) -> bool:
    """Holdout items are labeled blind: the model's view stays hidden until someone labeled them."""
    return document.split == Split.HOLDOUT and not document.is_labeled


@project_page(roles.ANNOTATE)
@require_GET
def document_detail(request: HttpRequest, pk: int, doc_id: int) -> HttpResponse:
    project = get_object_or_404(Project, pk=pk)
    document = get_object_or_404(Document, pk=doc_id, project=project)
    champion = champion_get(project_id=project.pk)
    prediction = (
        Prediction.objects.filter(document=document, model_version=champion).first() if champion else None
    )
    annotations = document.annotations.select_related("annotator").prefetch_related("revisions")
    return render(
        request, "ui/document.html",
        {"project": project, "document": document, "blind": _blind(document),
         "prediction": None if _blind(document) else prediction, "champion": champion,
         "annotations": annotations},
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
    return JsonResponse(dash.dashboard(project=project, include_quality=manages))


@project_json(roles.ANNOTATE)
@require_GET
def attributions_json(request: HttpRequest, pk: int, doc_id: int) -> HttpResponse:
    """Token highlights for the champion's prediction of one document (computed on request, ~0.5 s)."""
    document = get_object_or_404(Document, pk=doc_id, project_id=pk)
    if _blind(document):
        return JsonResponse({"detail": "Holdout items are labeled blind."}, status=409)
    champion = champion_get(project_id=document.project_id)
    prediction = (
        Prediction.objects.filter(document=document, model_version=champion).first() if champion else None
    )
    if prediction is None:
        return JsonResponse({"detail": "The current model has not scored this document yet."}, status=404)
    tokens = prediction.attributions
    if not tokens:
        try:
            tokens = prediction_attributions(prediction=prediction)
        except (ImportError, OSError, RuntimeError, ValueError):
            # A missing or broken artifact must not break the labeling page: say so, log the cause.
            logger.exception("attributions failed for prediction %s", prediction.pk)
            return JsonResponse({"detail": "Highlights could not be computed for this model."}, status=503)
    return JsonResponse(
        {"document": document.pk, "version": champion.version if champion else None,
         "label": prediction.predicted_label, "tokens": tokens or []}
    )


