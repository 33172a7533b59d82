"""``GET /metrics``: Prometheus metrics for a scraper holding ``METRICS_TOKEN``, nobody else.

What a scrape returns:

- the web processes' request metrics from django-prometheus's middleware (latency by view and
  method, responses by status, view and method). gunicorn runs several processes, so with
  ``PROMETHEUS_MULTIPROC_DIR`` set (the image sets it) every process writes its figures to files
  there and a scrape, whichever process answers it, reads all of them (prometheus_client's
  multiprocess mode); without it (``manage.py runserver``, one process) this process's registry;
- the service's gauges (``ServiceCollector``), computed at scrape time by the answering process:
  queue depths from the broker on every scrape, the per-project figures from the database at most
  once per ``METRICS_CACHE_SECONDS`` (in Django's cache, so shared by every process with CACHE_URL).

Not public: unset ``METRICS_TOKEN`` means 404 for everyone; otherwise only
``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time) gets the page, no session or API
token of any role does (401), and wrong tokens count toward the failed-authentication rate limit.
Label values are ids, URL names, methods, status codes and queue names: never a document's text or
a user's name.
"""

from __future__ import annotations

import hmac
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.http import HttpResponse
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, NotFound
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from labeling.api.throttles import CountsFailedAuthentication
from labeling.selectors.metrics import ProjectFigures, project_figures, queue_depths

#: ``request.auth`` of a request that presented the metrics token.
SCRAPER = "metrics-token"


class MetricsTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <METRICS_TOKEN>``; no header is anonymous, a wrong token is refused."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        expected = str(settings.METRICS_TOKEN).encode()
        if len(parts) != 2 or not hmac.compare_digest(parts[1], expected):
            raise AuthenticationFailed("Invalid metrics token.")
        return AnonymousUser(), SCRAPER

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="metrics"'


class MetricsTokenScheme(OpenApiAuthenticationExtension):
    target_class = MetricsTokenAuthentication
    name = "metricsToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")


class HoldsMetricsToken(BasePermission):
    def has_permission(self, request: Request, view: Any) -> bool:
        return request.auth == SCRAPER


class ServiceCollector:
    """The service's gauges, per project (label ``project``: the id) and per Celery queue."""

    def __init__(self, cache_seconds: float) -> None:
        self.cache_seconds = cache_seconds

    def collect(self) -> Iterator[Metric]:
        yield from _service_families(_figures(self.cache_seconds))


FIGURES_KEY = "alabel:metrics:project-figures"
_compute_lock = threading.Lock()


def _figures(cache_seconds: float) -> list[ProjectFigures]:
    """The per-project figures, computed at most once per ``cache_seconds`` per cache.

    Django's cache: per process by default, one for every process and replica with CACHE_URL on
    Redis. Threads of one process wait for one computation instead of each running the counts.
    """
    figures = cache.get(FIGURES_KEY)
    if figures is not None:
        return list(figures)
    with _compute_lock:
        figures = cache.get(FIGURES_KEY)
        if figures is None:
            figures = project_figures()
            if cache_seconds > 0:
                cache.set(FIGURES_KEY, figures, timeout=cache_seconds)
    return list(figures)


def _service_families(figures: list[ProjectFigures]) -> Iterable[Metric]:
    gauges = {
        "documents": GaugeMetricFamily("alabel_project_documents", "Documents in the project.", labels=["project"]),
        "labels": GaugeMetricFamily("alabel_project_labels", "Labels given in the project.", labels=["project"]),
        "labels_last_hour": GaugeMetricFamily(
            "alabel_project_labels_last_hour", "Labels given in the last 60 minutes.", labels=["project"]
        ),
        "coverage": GaugeMetricFamily(
            "alabel_project_coverage_ratio",
            "Share of the project's documents the champion model has scored.",
            labels=["project"],
        ),
    }
    ece = GaugeMetricFamily(
        "alabel_project_champion_ece",
        "Expected calibration error of the champion model on its labeled holdout (stored at training).",
        labels=["project"],
    )
    for row in figures:
        project = [str(row.project_id)]
        gauges["documents"].add_metric(project, row.documents)
        gauges["labels"].add_metric(project, row.labels)
        gauges["labels_last_hour"].add_metric(project, row.labels_last_hour)
        gauges["coverage"].add_metric(project, row.coverage)
        if row.champion_ece is not None:
            ece.add_metric(project, row.champion_ece)
    depth = GaugeMetricFamily(
        "alabel_celery_queue_depth", "Messages waiting in a Celery queue (not those a worker holds).", labels=["queue"]
    )
    for queue, messages in queue_depths().items():
        if messages is not None:
            depth.add_metric([queue], messages)
    return [*gauges.values(), ece, depth]


class _ThisProcess:
    """This process's default registry (request metrics) when there is no multiprocess directory."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())  # type: ignore[arg-type]
    registry.register(ServiceCollector(float(settings.METRICS_CACHE_SECONDS)))  # type: ignore[arg-type]
    return registry


class MetricsApi(CountsFailedAuthentication, APIView):
    """Prometheus metrics (text exposition format) for the holder of ``METRICS_TOKEN``."""

    authentication_classes = [MetricsTokenAuthentication]
    permission_classes = [HoldsMetricsToken]
    # A scraper is one client polling every few seconds; wrong tokens still meet the failure limit.
    throttle_classes: list = []

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        if not settings.METRICS_TOKEN:
            raise NotFound("metrics are off: set METRICS_TOKEN to serve them")
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="metrics",
        summary="Prometheus metrics",
        description=(
            "Request latency, queue depths, per-project documents, labels, labels in the last hour, the "
            "share the champion has scored and its ECE in the Prometheus text format. Needs `Authorization: Bearer "
            "<METRICS_TOKEN>`; 404 when METRICS_TOKEN is not set."
        ),
        responses={
            (200, CONTENT_TYPE_LATEST.split(";")[0]): OpenApiResponse(OpenApiTypes.STR),
            401: OpenApiResponse(description="no or a wrong metrics token"),
            404: OpenApiResponse(description="METRICS_TOKEN is not set"),
        },
        tags=["metrics"],
    )
    def get(self, request: Request) -> HttpResponse:
        return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
