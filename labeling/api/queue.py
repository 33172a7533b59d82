"""The annotation queue: lease the next document, renew / skip / release it, label it, edit a label."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import roles
from labeling.api.answers import AnswerInputSerializer, AnswerOutputMixin, answer_of
from labeling.api.base import BaseApi, get_or_404, project_or_404, request_project_or_404
from labeling.api.permissions import IsProjectAnnotator
from labeling.labelspace import label_space_for_model
from labeling.models import Annotation, AnnotationSource, Assignment, Prediction
from labeling.selectors.models import champion_prediction
from labeling.services.annotations import MAX_DURATION_MS, annotation_submit, annotation_update
from labeling.services.assignments import (
    assignment_release,
    assignment_renew,
    assignment_skip,
    lease_next,
)


class ReasonSerializer(serializers.Serializer):
    strategy = serializers.CharField(
        help_text="acquisition strategy, holdout_random, or before the first model cold_start_random, "
        "cold_start_typiclust or cold_start_zero_shot",
    )
    score = serializers.FloatField(allow_null=True, help_text="acquisition score (higher = asked sooner)")
    holdout = serializers.BooleanField(help_text="true: an evaluation item, labeled blind (no prediction shown)")
    model_version = serializers.IntegerField(allow_null=True)
    rank = serializers.IntegerField(required=False)

    class Meta:
        ref_name = "QueueReason"


class AssignmentSerializer(serializers.ModelSerializer):
    state = serializers.CharField(help_text="active, done, skipped, released or expired")

    class Meta:
        model = Assignment
        ref_name = "Assignment"
        fields = ("id", "document", "state", "leased_until", "created_at", "finished_at")


class QueueDocumentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    text = serializers.CharField()
    metadata = serializers.JSONField()

    class Meta:
        ref_name = "QueueDocument"


class QueuePredictionSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    label = serializers.CharField()
    confidence = serializers.FloatField(help_text="calibrated probability of the predicted label")
    probabilities = serializers.DictField(child=serializers.FloatField())
    entropy = serializers.FloatField(help_text="total uncertainty, nats")
    expected_entropy = serializers.FloatField(help_text="aleatoric part, nats")
    mutual_info = serializers.FloatField(help_text="epistemic part (BALD), nats")
    margin = serializers.FloatField()
    acquisition_score = serializers.FloatField()

    class Meta:
        ref_name = "QueuePrediction"


class QueueSuggestionSerializer(serializers.Serializer):
    label = serializers.CharField()
    score = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "QueueSuggestion"


class QueueItemSerializer(serializers.Serializer):
    assignment = AssignmentSerializer()
    document = QueueDocumentSerializer()
    reason = ReasonSerializer()
    prediction = QueuePredictionSerializer(allow_null=True, help_text="null for holdout items and before a model")
    suggestion = QueueSuggestionSerializer(
        allow_null=True,
        help_text="an imported pre-annotation (an external model's label and score); null for holdout items "
        "and documents without one. Never trained on: accepting it is submitting that label",
    )
    labels = serializers.ListField(child=serializers.DictField())
    task_type = serializers.CharField(
        help_text="single_label: answer with `label`; multi_label: answer with `labels` (a list)"
    )

    class Meta:
        ref_name = "QueueItem"


def _prediction(assignment: Assignment, known: Prediction | None = None) -> dict[str, Any] | None:
    """The champion's prediction for the leased document; ``known`` when the queue read it with the ranking."""
    if assignment.reason.get("holdout"):
        return None  # labeled blind: showing the model's guess would bias the evaluation labels
    p = known or champion_prediction(document_id=assignment.document_id, project_id=assignment.document.project_id)
    if p is None:
        return None
    champion = p.model_version
    return {
        "model_version": champion.version,
        "label": p.predicted_label,
        "confidence": p.confidence,
        "probabilities": label_space_for_model(champion).probabilities(p.probabilities),
        "entropy": p.entropy,
        "expected_entropy": p.expected_entropy,
        "mutual_info": p.mutual_info,
        "margin": p.margin,
        "acquisition_score": p.acquisition_score,
    }


def _suggestion(assignment: Assignment) -> dict[str, Any] | None:
    """The document's imported pre-annotation, if any; never for a holdout item (labeled blind)."""
    doc = assignment.document
    if assignment.reason.get("holdout") or not doc.suggested_label:
        return None
    return {"label": doc.suggested_label, "score": doc.suggested_score}


_TIME = serializers.DateTimeField()


def _assignment(assignment: Assignment) -> dict[str, Any]:
    """``AssignmentSerializer(assignment).data``, built directly: a ModelSerializer builds its fields
    per instance, a large share of a queue response's Python (bench/queue_profile.py)."""

    def time(value: Any) -> str | None:
        return None if value is None else _TIME.to_representation(value)

    return {
        "id": assignment.pk,
        "document": assignment.document_id,
        "state": str(assignment.state),
        "leased_until": time(assignment.leased_until),
        "created_at": time(assignment.created_at),
        "finished_at": time(assignment.finished_at),
    }


def queue_item(assignment: Assignment, prediction: Prediction | None = None) -> dict[str, Any]:
    doc = assignment.document
    reason = {
        "strategy": "",
        "score": None,
        "holdout": False,
        "model_version": None,
        **(assignment.reason or {}),
    }
    return {
        "assignment": _assignment(assignment),
        "document": {
            "id": doc.pk,
            "external_id": doc.external_id,
            "text": doc.text,
            "metadata": doc.metadata,
        },
        "reason": reason,
        "prediction": _prediction(assignment, prediction),
        "suggestion": _suggestion(assignment),
        "labels": doc.project.labels,
        "task_type": doc.project.task_type,
    }


class QueueNextApi(BaseApi):
    permission_classes = [IsProjectAnnotator]

    @extend_schema(
        operation_id="queue_next",
        request=None,
        responses={200: QueueItemSerializer, 204: OpenApiResponse(description="nothing left to label")},
        description="Lease the most useful free document to the caller (or return its active lease).",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = request_project_or_404(request, project_id)
        lease = lease_next(project=project, annotator=request.user)
        if lease is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        lease.assignment.document.project = project  # the lease is in this project: skip a re-read
        return Response(queue_item(lease.assignment, lease.prediction))


class _AssignmentActionApi(BaseApi):
    permission_classes = [IsProjectAnnotator]

    def act(self, request: Request, assignment_id: int, perform: Any) -> Response:
        assignment = get_or_404(Assignment, assignment_id)
        return Response(AssignmentSerializer(perform(assignment=assignment, user=request.user)).data)


class AssignmentRenewApi(_AssignmentActionApi):
    @extend_schema(
        operation_id="assignments_renew",
        request=None,
        responses=AssignmentSerializer,
        description="Extend the caller's live lease; 409 lease_expired once it ran out.",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        return self.act(request, assignment_id, assignment_renew)


class AssignmentSkipApi(_AssignmentActionApi):
    @extend_schema(
        operation_id="assignments_skip",
        request=None,
        responses=AssignmentSerializer,
        description="Give the document back; the caller is not offered it again.",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        return self.act(request, assignment_id, assignment_skip)


class AssignmentReleaseApi(_AssignmentActionApi):
    @extend_schema(
        operation_id="assignments_release",
        request=None,
        responses=AssignmentSerializer,
        description="Give the document back to the pool (an admin may release anyone's lease).",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        return self.act(request, assignment_id, assignment_release)


class AnnotationOutputSerializer(AnswerOutputMixin, serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    model_version = serializers.IntegerField(source="model_version.version", allow_null=True, default=None)
    revisions = serializers.SerializerMethodField(help_text="how many times the label was changed")

    class Meta:
        model = Annotation
        ref_name = "Annotation"
        fields = (
            "id",
            "document",
            "assignment",
            "annotator",
            "label",
            "labels",
            "duration_ms",
            "source",
            "model_version",
            "predicted_label",
            "predicted_confidence",
            "created_at",
            "updated_at",
            "revisions",
        )

    def get_revisions(self, obj: Annotation) -> int:
        counted = getattr(obj, "revision_count", None)  # annotated by the list view: no query per row
        return counted if counted is not None else obj.revisions.count()


class AnnotationCreateApi(BaseApi):
    permission_classes = [IsProjectAnnotator]

    class InputSerializer(AnswerInputSerializer):
        duration_ms = serializers.IntegerField(min_value=0, max_value=MAX_DURATION_MS, required=False, allow_null=True)
        source = serializers.ChoiceField(choices=[AnnotationSource.API, AnnotationSource.UI], default="api")

        class Meta:
            ref_name = "AnnotationCreate"

    @extend_schema(
        operation_id="annotations_create",
        request=InputSerializer,
        responses={201: AnnotationOutputSerializer, 200: AnnotationOutputSerializer},
        description="Label the leased document: `label` (one name) in a single-label project, `labels` (a list "
        "of names, [] when none applies) in a multi-label one; the other field is a 400 naming it. Idempotent: "
        "a retry returns the stored annotation with 200.",
    )
    def post(self, request: Request, assignment_id: int) -> Response:
        assignment = get_or_404(Assignment, assignment_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        annotation, created = annotation_submit(
            assignment=assignment,
            user=request.user,
            **answer_of(data.validated_data),
            duration_ms=data.validated_data.get("duration_ms"),
            source=data.validated_data["source"],
        )
        if created:
            annotation.revision_count = 0  # a new label has no revisions: skip the count query
        return Response(
            AnnotationOutputSerializer(annotation).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AnnotationUpdateApi(BaseApi):
    permission_classes = [IsProjectAnnotator]

    class InputSerializer(AnswerInputSerializer):
        class Meta:
            ref_name = "AnnotationUpdate"

    @extend_schema(
        operation_id="annotations_update",
        request=InputSerializer,
        responses=AnnotationOutputSerializer,
        description="Change a label given earlier (its annotator or an admin); audited as a revision.",
    )
    def patch(self, request: Request, annotation_id: int) -> Response:
        annotation = get_or_404(Annotation, annotation_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        updated = annotation_update(annotation=annotation, user=request.user, **answer_of(data.validated_data))
        return Response(AnnotationOutputSerializer(updated).data)


class AnnotationListApi(BaseApi):
    permission_classes = [IsProjectAnnotator]
    LIMIT = 200

    class FilterSerializer(serializers.Serializer):
        mine = serializers.BooleanField(
            required=False, default=False, help_text="only the caller's labels (always on for non-admins)"
        )
        limit = serializers.IntegerField(required=False, min_value=1, max_value=200, default=50)

        class Meta:
            ref_name = "AnnotationFilter"

    @extend_schema(
        operation_id="annotations_list",
        parameters=[FilterSerializer],
        responses=AnnotationOutputSerializer(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        qs: QuerySet[Annotation] = Annotation.objects.filter(project=project)
        if params.validated_data["mine"] or not roles.can(request.user, roles.READ_ALL_LABELS, project.pk):
            qs = qs.filter(annotator=request.user)
        qs = (
            qs.select_related("annotator", "model_version")
            .annotate(revision_count=Count("revisions"))
            .order_by("-updated_at", "-pk")
        )
        return Response(
            AnnotationOutputSerializer(
                qs[: params.validated_data["limit"]], many=True, context={"space": project.label_space}
            ).data
        )
