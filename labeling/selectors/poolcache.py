"""Figures that read a project's whole pool, per request on small projects and cached on large ones.

The dashboard's document counts, uncertainty histogram, class balance, coverage and map, and the
counts of ``/stats``, each read every document or every champion prediction of the project: linear
in the pool. Below ``POOL_FIGURES_EXACT_MAX_DOCUMENTS`` documents they are computed on every request,
exact and current. At or above it they are computed at most once per ``POOL_FIGURES_CACHE_SECONDS``
per project and champion and read from the cache in between (one cache for every web process when
CACHE_URL points at Redis): at most that many seconds old, stated in the answer as ``as_of``. A new
champion is a new key, so a promotion shows at once. The computation that fills the cache runs under
METRICS_STATEMENT_TIMEOUT_MS (as the /metrics counts do), since at a million documents its counts
take seconds. Figures and arithmetic: docs/BENCHMARKS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from labeling.models import Document

_PREFIX = "alabel:pool-figures"


def is_large(project_id: int) -> bool:
    """Whether the project has ``POOL_FIGURES_EXACT_MAX_DOCUMENTS`` documents or more (re-counted once per period)."""
    key = f"{_PREFIX}:{project_id}:large"
    large = cache.get(key)
    if large is None:
        limit = settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS
        # An index-only probe for the limit-th document: bounded, however large the project.
        large = Document.objects.filter(project_id=project_id).order_by().values("pk")[limit - 1 : limit].exists()
        cache.set(key, large, timeout=settings.POOL_FIGURES_CACHE_SECONDS)
    return bool(large)


def pool_figures(
    *, project_id: int, champion_id: int | None, name: str, compute: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``compute()`` plus ``as_of`` (None: computed for this request); cached as the module says."""
    key = f"{_PREFIX}:{project_id}:{champion_id}:{name}"
    hit = cache.get(key)
    if hit is not None:
        return hit
    if is_large(project_id):
        # Linear counts, once per period: under the metrics' statement timeout, not the web's 5 s.
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SET LOCAL statement_timeout = %s", [int(settings.METRICS_STATEMENT_TIMEOUT_MS)])
            figures = {**compute(), "as_of": timezone.now().isoformat()}
        cache.set(key, figures, timeout=settings.POOL_FIGURES_CACHE_SECONDS)
        return figures
    return {**compute(), "as_of": None}
