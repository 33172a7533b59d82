"""Liveness and readiness probes (no auth, no throttling) and the locally served API docs."""

from __future__ import annotations

import logging
import mimetypes
from importlib.util import find_spec
from pathlib import Path

from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import FileResponse, Http404, HttpRequest, JsonResponse
from django.views.decorators.http import require_GET
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from labeling.api.throttles import CountsFailedAuthentication

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and answering."""
    return JsonResponse({"status": "ok"})


def _database() -> str | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return None
    except Exception:  # any driver error means "not ready"; its text (host, user) goes to the log only
        logger.warning("readyz: the database does not answer", exc_info=True)
        return "unavailable"


def _broker() -> str | None:
    try:
        # The Celery app's transport options (e.g. the embedded filesystem broker's folders) apply.
        with current_app.connection_for_write(
            settings.CELERY_BROKER_URL, connect_timeout=BROKER_TIMEOUT_S
        ) as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S)
        return None
    except Exception:  # any transport error means "not ready"; details (URL, host) to the log only
        logger.warning("readyz: the broker does not answer", exc_info=True)
        return "unavailable"


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Ready to serve: the database answers and the broker accepts a connection (503 otherwise)."""
    checks = {"database": _database(), "broker": _broker()}
    ready = all(problem is None for problem in checks.values())
    body = {
        "status": "ok" if ready else "unavailable",
        "checks": {name: "ok" if problem is None else problem for name, problem in checks.items()},
    }
    return JsonResponse(body, status=200 if ready else 503)


def _sidecar_dir() -> Path:
    spec = find_spec("drf_spectacular_sidecar")
    if spec is None or not spec.submodule_search_locations:
        raise Http404("drf-spectacular-sidecar is not installed")
    return (
        Path(next(iter(spec.submodule_search_locations)))
        / "static"
        / "drf_spectacular_sidecar"
        / "swagger-ui-dist"
    )


_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
        "oauth2-redirect.html",
    }
)


@require_GET
def docs_asset(request: HttpRequest, name: str) -> FileResponse:
    """Swagger UI files from the installed sidecar package: the docs page never reaches a CDN."""
    if name not in _ASSETS:
        raise Http404(name)
    path = _sidecar_dir() / name
    if not path.is_file():
        raise Http404(name)
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return FileResponse(path.open("rb"), content_type=content_type)


class SchemaApi(CountsFailedAuthentication, SpectacularAPIView):
    """The OpenAPI schema (no auth needed; a wrong token still counts as a failed authentication)."""

    permission_classes: list = []


class DocsApi(CountsFailedAuthentication, SpectacularSwaggerSplitView):
    """Swagger UI at /api/docs/; its assets come from /api/docs/assets/ (no INSTALLED_APPS change).

    The split view serves its start-up script from ``?script`` and the template has no inline style,
    so the page runs under the site's Content-Security-Policy (script-src and style-src 'self').
    """

    url_name = "api-schema"
    permission_classes: list = []
    template_name = "ui/swagger_ui.html"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return f"/api/docs/assets/{filename}"

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return "/api/docs/assets/favicon-32x32.png"
