"""Project statistics and exports."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsProjectManager
from labeling.selectors import exports
from labeling.selectors.stats import project_stats
from labeling.services.audit import export_record


class ProjectStatsApi(BaseApi):
    permission_classes = [IsProjectManager]

    @extend_schema(
        operation_id="projects_stats",
        responses=OpenApiTypes.OBJECT,
        description="Counts per label and split, queue size, champion coverage, annotator throughput, "
        "learning curve (labels -> holdout accuracy / macro-F1 per model version, with the accuracy's 95 % "
        "Wilson interval, its n and too_small below 100 items), agreement with the model (and "
        "agreement_with_model_figures: value, interval, n, too_small). On a large project the pool-wide figures "
        "are computed at most once per POOL_FIGURES_CACHE_SECONDS (pool_figures_as_of) and the coverage is "
        "estimated from a seeded page sample of its documents (coverage_sample: documents, of, percent; null "
        "when exact).",
    )
    def get(self, request: Request, project_id: int) -> Response:
        return Response(project_stats(project_or_404(project_id)))


class NoFormatOverride(DefaultContentNegotiation):
    """``?format=`` picks the export format here, not a DRF renderer."""

    def select_renderer(self, request: Any, renderers: Any, format_suffix: Any = None) -> Any:
        return renderers[0], renderers[0].media_type


_CONTENT = {
    "jsonl": ("application/x-ndjson", "jsonl"),
    "csv": ("text/csv; charset=utf-8", "csv"),
    "parquet": ("application/vnd.apache.parquet", "parquet"),
    "hf": ("application/zip", "zip"),
}


class ProjectExportApi(BaseApi):
    permission_classes = [IsProjectManager]
    content_negotiation_class = NoFormatOverride

    class FilterSerializer(serializers.Serializer):
        format = serializers.ChoiceField(choices=list(exports.FORMATS), default="jsonl")

        class Meta:
            ref_name = "ExportFilter"

    @extend_schema(
        operation_id="projects_export",
        parameters=[OpenApiParameter("format", str, enum=list(exports.FORMATS), default="jsonl")],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
        description="One row per annotation: document id / external_id / text, annotator, label, time, "
        "the model's prediction at labeling time, and the document's consensus, final label, who decided "
        "it and why it is in review now (in_review). format=hf: a zip loadable with "
        "datasets.load_dataset('json'), with agreement.json (the project's agreement summary); "
        "format=parquet keeps the summary in the file metadata (key alabel.agreement); every format's "
        'response links it: Link: <.../agreement>; rel="describedby".',
    )
    def get(self, request: Request, project_id: int) -> StreamingHttpResponse:
        project = project_or_404(project_id)
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        fmt = params.validated_data["format"]
        export_record(project=project, actor=request.user, fmt=fmt)
        if fmt == "jsonl":
            chunks = exports.jsonl_chunks(project)
        elif fmt == "csv":
            chunks = exports.csv_chunks(project)
        elif fmt == "parquet":
            chunks = exports.file_chunks(exports.write_parquet, project)
        else:
            chunks = exports.file_chunks(exports.write_hf_zip, project)
        content_type, suffix = _CONTENT[fmt]
        response = StreamingHttpResponse(chunks, content_type=content_type)
        name = slugify(project.name) or f"project-{project.pk}"
        response["Content-Disposition"] = f'attachment; filename="{name}-labels.{suffix}"'
        # JSONL and CSV rows have no room for the project's agreement summary: point to it.
        agreement = request.build_absolute_uri(reverse("api-project-agreement", args=[project.pk]))
        response["Link"] = f'<{agreement}>; rel="describedby"; type="application/json"'
        return response
