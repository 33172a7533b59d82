"""Team figures: inter-annotator agreement (reviewers and managers) and annotator quality (managers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsProjectManager, IsProjectReviewer
from labeling.selectors.agreement import annotator_quality, project_agreement

MAX_BOOT = 5000


class _BootSerializer(serializers.Serializer):
    n_boot = serializers.IntegerField(min_value=0, max_value=MAX_BOOT, required=False)

    class Meta:
        ref_name = "AgreementQuery"


_N_BOOT = OpenApiParameter("n_boot", int, required=False, description=f"bootstrap resamples, 0-{MAX_BOOT}")


class AgreementApi(BaseApi):
    permission_classes = [IsProjectReviewer]

    @extend_schema(
        operation_id="projects_agreement",
        parameters=[_N_BOOT],
        responses=serializers.JSONField(),
        description="Agreement on the overlapped items (2+ labels): Krippendorff's alpha, Fleiss' kappa, "
        "pairwise Cohen's kappa, per label and per annotator, each {value, low, high, n_items, enough, note} "
        "with a 95% item-bootstrap interval (default 1000 resamples). Under 10 overlapped items a figure "
        "says 'too few overlapped items' (enough=false).",
    )
    def get(self, request: Request, project_id: int) -> Response:
        query = _BootSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        n_boot = query.validated_data.get("n_boot", 1000)
        return Response(project_agreement(project=project_or_404(project_id), n_boot=n_boot))


class QualityApi(BaseApi):
    permission_classes = [IsProjectManager]

    @extend_schema(
        operation_id="projects_quality",
        parameters=[_N_BOOT],
        responses=serializers.JSONField(),
        description="Per annotator: accuracy and Cohen's kappa (with intervals) against the other annotators' "
        "consensus, reviewers' decisions and gold labels; a confusion against the final label; labels, "
        "median seconds per label and labels per active hour. Managers and staff only.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        query = _BootSerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        n_boot = query.validated_data.get("n_boot", 500)
        return Response(annotator_quality(project=project_or_404(project_id), n_boot=n_boot))
