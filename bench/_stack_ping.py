"""Bench-only URLconf: the service's URLs plus one ``SELECT 1`` view behind the queue's own gate.

``bench/scale.py`` serves this through the same gunicorn as ``queue/next`` (settings
``_stack_settings``) to measure the floor a queue request cannot beat on this machine: HTTP,
gunicorn, DRF, token authentication with the membership read, the annotator permission, the
throttles and one PostgreSQL round trip. Never part of the service.
"""

from __future__ import annotations

from django.db import connection
from django.urls import path
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi
from labeling.api.permissions import IsProjectAnnotator
from labeling.urls import urlpatterns as service_urlpatterns


class Select1Api(BaseApi):
    permission_classes = [IsProjectAnnotator]

    def post(self, request: Request, project_id: int) -> Response:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            (one,) = cursor.fetchone()
        return Response({"select": one})


urlpatterns = [
    path("bench/projects/<int:project_id>/select1", Select1Api.as_view(), name="bench-select1"),
    *service_urlpatterns,
]
