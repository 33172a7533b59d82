"""REST API under /api/v1/, plus /healthz and /readyz (filled in by the API work)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
