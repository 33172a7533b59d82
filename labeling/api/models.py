"""Predictions for ad-hoc texts, model versions (promote, rollback) and training runs."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, get_or_404, project_or_404
from labeling.api.permissions import IsProjectIngest, IsProjectManager, IsProjectMember
from labeling.models import ModelVersion, RunTrigger, TrainingRun
from labeling.selectors.models import model_figures
from labeling.services.documents import text_problem
from labeling.services.modeling import predict_texts
from labeling.services.training.promotion import model_version_promote, model_version_rollback
from labeling.services.training.triggers import training_run_request

MAX_PREDICT_TEXTS = 64


class PredictionResultSerializer(serializers.Serializer):
    label = serializers.CharField()
    confidence = serializers.FloatField(help_text="calibrated probability of the label")
    probabilities = serializers.DictField(child=serializers.FloatField())
    entropy = serializers.FloatField()
    expected_entropy = serializers.FloatField()
    mutual_info = serializers.FloatField()
    margin = serializers.FloatField()
    recommendation = serializers.ChoiceField(choices=["auto_accept", "review", "escalate"])
    model_version = serializers.IntegerField()

    class Meta:
        ref_name = "PredictionResult"


class PredictApi(BaseApi):
    permission_classes = [IsProjectIngest]

    class InputSerializer(serializers.Serializer):
        texts = serializers.ListField(
            child=serializers.CharField(trim_whitespace=False, max_length=None),
            min_length=1,
            max_length=MAX_PREDICT_TEXTS,
        )

        class Meta:
            ref_name = "PredictRequest"

        def validate_texts(self, texts: list[str]) -> list[str]:
            problems = {f"texts[{i}]": why for i, t in enumerate(texts) if (why := text_problem(t))}
            if problems:
                raise serializers.ValidationError(problems)
            total = sum(len(t) for t in texts)
            if total > settings.PREDICT_MAX_CHARS:
                # The encoder runs in the web process here: its time grows with the characters sent.
                raise serializers.ValidationError(
                    f"the texts total {total:,} characters; /predict takes at most {settings.PREDICT_MAX_CHARS:,} "
                    "per request (split the request, or add the texts as documents: workers score those)"
                )
            return texts

    class OutputSerializer(serializers.Serializer):
        predictions = PredictionResultSerializer(many=True)

        class Meta:
            ref_name = "PredictResponse"

    @extend_schema(
        operation_id="predict",
        request=InputSerializer,
        responses=OutputSerializer,
        description="The champion's calibrated predictions; 409 no_model before the first model. At most 64 "
        "texts and PREDICT_MAX_CHARS characters in all (default 100,000); the texts are not cached.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        predictions = predict_texts(project=project, texts=data.validated_data["texts"])
        return Response({"predictions": predictions})


class FiguresSerializer(serializers.Serializer):
    """A model's headline figures with their intervals and n (``labeling.selectors.models.model_figures``)."""

    accuracy = serializers.FloatField(allow_null=True)
    accuracy_interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="95 % Wilson interval [low, high]"
    )
    ece = serializers.FloatField(allow_null=True, help_text="expected calibration error after calibration")
    ece_interval = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="95 % bootstrap interval [low, high]"
    )
    ece_noise_floor = serializers.FloatField(
        allow_null=True, help_text="the ECE a perfectly calibrated model shows on this many items"
    )
    n = serializers.IntegerField(allow_null=True, help_text="labeled items the figures were measured on")
    min_n = serializers.IntegerField(help_text="below this many items a figure is too small to judge")
    too_small = serializers.BooleanField(allow_null=True, help_text="n < min_n: noise, not a verdict")
    evaluated_on = serializers.CharField(allow_null=True, help_text="holdout or calibration_split")

    class Meta:
        ref_name = "ModelFigures"


def _figures(version: ModelVersion | None) -> dict[str, Any] | None:
    return model_figures(version.metrics) if version is not None else None


class ModelVersionSerializer(serializers.ModelSerializer):
    status = serializers.CharField(help_text="training, candidate, champion, rejected or retired")
    figures = serializers.SerializerMethodField()

    class Meta:
        model = ModelVersion
        ref_name = "ModelVersion"
        fields = (
            "id",
            "version",
            "status",
            "encoder_name",
            "label_map",
            "train_label_count",
            "metrics",
            "figures",
            "calibration",
            "decision_reason",
            "created_at",
            "promoted_at",
        )

    @extend_schema_field(FiguresSerializer)
    def get_figures(self, obj: ModelVersion) -> dict[str, Any] | None:
        return _figures(obj)


class ModelListApi(BaseApi):
    permission_classes = [IsProjectMember]

    @extend_schema(operation_id="models_list", responses=ModelVersionSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        versions = ModelVersion.objects.filter(project=project).order_by("-version")
        return Response(ModelVersionSerializer(versions, many=True).data)


class ModelPromoteApi(BaseApi):
    permission_classes = [IsProjectManager]

    @extend_schema(operation_id="models_promote", request=None, responses=ModelVersionSerializer)
    def post(self, request: Request, project_id: int, model_id: int) -> Response:
        project = project_or_404(project_id)
        version = get_or_404(ModelVersion, model_id, project=project)
        model_version_promote(model_version=version, by=request.user)
        version.refresh_from_db()
        return Response(ModelVersionSerializer(version).data)


class ModelRollbackApi(BaseApi):
    permission_classes = [IsProjectManager]

    @extend_schema(operation_id="models_rollback", request=None, responses=ModelVersionSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        champion = model_version_rollback(project=project, by=request.user)
        return Response(ModelVersionSerializer(champion).data)


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True, default=None)
    figures = serializers.SerializerMethodField(help_text="the run's model figures with intervals; null: no model")

    class Meta:
        model = TrainingRun
        ref_name = "TrainingRun"
        fields = (
            "id",
            "trigger",
            "status",
            "stage",
            "progress",
            "labels_used",
            "tier",
            "train_seconds",
            "model_version",
            "figures",
            "promoted",
            "decision_reason",
            "coalesced_triggers",
            "error",
            "created_at",
            "started_at",
            "finished_at",
        )

    @extend_schema_field(FiguresSerializer(allow_null=True))
    def get_figures(self, obj: TrainingRun) -> dict[str, Any] | None:
        return _figures(obj.model_version)


class TrainingRunCollectionApi(BaseApi):
    """GET lists runs (any role); POST asks for a retrain now (admin)."""

    def get_permissions(self) -> list[Any]:
        return [IsProjectManager()] if self.request.method == "POST" else [IsProjectMember()]

    @extend_schema(operation_id="training_runs_list", responses=TrainingRunSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        runs = (
            TrainingRun.objects.filter(project=project).select_related("model_version").order_by("-pk")[:100]
        )
        return Response(TrainingRunSerializer(runs, many=True).data)

    @extend_schema(
        operation_id="training_runs_create",
        request=None,
        responses={202: TrainingRunSerializer},
        description="Retrain now. While a run is open the request is coalesced into it.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        run = training_run_request(project=project, trigger=RunTrigger.MANUAL, requested_by=request.user)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
