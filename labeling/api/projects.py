"""Projects: list, create, detail, policy update."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import roles
from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsAdmin, IsProjectManager, IsProjectMember
from labeling.models import (
    MAX_NOISE_REVIEW_SHARE,
    MAX_OVERLAP,
    MODEL_FEATURES,
    AcquisitionStrategy,
    OverlapScope,
    Project,
    TaskType,
    validate_deep_tier,
    validate_fine_tune,
)
from labeling.services.projects import POLICY_FIELDS, project_create, project_update_policy


class LabelSerializer(serializers.Serializer):
    name = serializers.CharField()
    text = serializers.CharField()
    key = serializers.CharField(allow_blank=True)

    class Meta:
        ref_name = "Label"


class ProjectOutputSerializer(serializers.ModelSerializer):
    labels = LabelSerializer(many=True)

    class Meta:
        model = Project
        ref_name = "Project"
        fields = ("id", "name", "labels", "task_type", *POLICY_FIELDS, "created_at")


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "0" get a 400 naming the field rather than a guess."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return bool(data)


#: Fields given when a project is created that no update may change.
FIXED_FIELDS = ("task_type",)


class PolicyFieldsSerializer(serializers.Serializer):
    description = serializers.CharField(required=False, allow_blank=True, max_length=10_000)
    acquisition_strategy = serializers.ChoiceField(choices=AcquisitionStrategy.choices, required=False)
    retrain_after = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    holdout_fraction = serializers.FloatField(min_value=0.0, max_value=0.5, required=False)
    holdout_interleave = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    random_share = serializers.FloatField(
        min_value=0.0, max_value=0.5, required=False,
        help_text="share of pool leases drawn at random instead of by the strategy once a model exists (default 0); "
        "their labels train the model and join the blind holdout in the temperature fit",
    )
    lease_minutes = serializers.IntegerField(min_value=1, max_value=24 * 60, required=False)
    auto_accept_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    review_threshold = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    promotion_tolerance = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    fine_tune = serializers.CharField(
        max_length=16,
        required=False,
        validators=[validate_fine_tune],
        help_text="frozen (default), topN (e.g. top2: the top N encoder layers train with the head) or full",
    )
    model_features = serializers.ChoiceField(
        choices=list(MODEL_FEATURES),
        required=False,
        help_text="embedding (default); hybrid: the encoder's vector beside a TF-IDF block fitted on the pool; sparse: "
        "the encoder's vector, and a logistic regression on that TF-IDF beside the head (the sparse path)",
    )
    deep_tier_every = serializers.IntegerField(
        min_value=0, max_value=1_000_000, required=False,
        help_text="0 (default): one tier, as fine_tune says. N: a retrain that crosses the next multiple of N labels "
        "since the last deep run tunes the encoder (deep_tier); the others train the head on the champion's encoder",
    )
    deep_tier = serializers.CharField(
        max_length=16, required=False, validators=[validate_deep_tier],
        help_text="what a deep run tunes: topN (default top2) or full",
    )
    deep_tier_budget_s = serializers.IntegerField(
        min_value=60, max_value=3000, required=False,
        help_text="seconds a deep run may tune (default 1800); then it keeps its best epoch so far",
    )
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, required=False)
    overlap = serializers.IntegerField(
        min_value=1, max_value=MAX_OVERLAP, required=False, help_text="annotators per document that gets overlap"
    )
    overlap_scope = serializers.ChoiceField(
        choices=OverlapScope.choices, required=False, help_text="which documents get overlap"
    )
    overlap_share = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False, help_text="with overlap_scope=share: the share of the pool"
    )
    min_agreement = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False,
        help_text="consensus: the top label's share of a document's labels must reach this; a tie never does",
    )
    review_audit_share = serializers.FloatField(
        min_value=0.0, max_value=1.0, required=False, help_text="share of single-labeled documents audited in review"
    )
    noise_review_share = serializers.FloatField(
        min_value=0.0, max_value=MAX_NOISE_REVIEW_SHARE, required=False,
        help_text="share of each run's training labels sent to review as likely mislabeled (default 0.1; 0: off); "
        "with noise_hold_flagged a flagged label stops training until a reviewer decides it",
    )
    noise_hold_flagged = StrictBooleanField(
        required=False,
        help_text="true: a label the noise loop flagged stops training until a reviewer decides it; false (the "
        "default): it keeps training until then, and the decision replaces it",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({
                field: "fixed at creation: it cannot be changed" if field in FIXED_FIELDS else "unknown field"
                for field in sorted(unknown)
            })
        return attrs


class ProjectListApi(BaseApi):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="projects_list", responses=ProjectOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ProjectOutputSerializer(roles.visible_projects(request.user).order_by("pk"), many=True).data)


class ProjectCreateApi(BaseApi):
    permission_classes = [IsAdmin]

    class InputSerializer(PolicyFieldsSerializer):
        name = serializers.CharField(max_length=200)
        task_type = serializers.ChoiceField(
            choices=TaskType.choices,
            required=False,
            help_text="single_label (default): one label per document; multi_label: any set of labels "
            "(answered with `labels`). Fixed at creation",
        )
        labels = serializers.JSONField(
            help_text='["a", "b"] or [{"name": "a", "text": "Label A", "key": "1"}, ...]'
        )

        class Meta:
            ref_name = "ProjectCreate"

    @extend_schema(
        operation_id="projects_create", request=InputSerializer, responses={201: ProjectOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(by=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data, status=status.HTTP_201_CREATED)


class ProjectCollectionApi(ProjectListApi, ProjectCreateApi):
    """GET lists the caller's projects (staff: all), POST creates (staff); the permission follows the method."""

    def get_permissions(self) -> list[Any]:
        return [IsAdmin()] if self.request.method == "POST" else [IsAuthenticated()]


class ProjectDetailApi(BaseApi):
    permission_classes = [IsProjectMember]

    @extend_schema(operation_id="projects_retrieve", responses=ProjectOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(ProjectOutputSerializer(project_or_404(project_id)).data)


class ProjectPolicyUpdateApi(BaseApi):
    permission_classes = [IsProjectManager]

    class InputSerializer(PolicyFieldsSerializer):
        class Meta:
            ref_name = "ProjectPolicyUpdate"

    @extend_schema(
        operation_id="projects_policy_update", request=InputSerializer, responses=ProjectOutputSerializer
    )
    def patch(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        project = project_update_policy(project=project, by=request.user, **data.validated_data)
        return Response(ProjectOutputSerializer(project).data)


class ProjectItemApi(ProjectDetailApi, ProjectPolicyUpdateApi):
    def get_permissions(self) -> list[Any]:
        return [IsProjectManager()] if self.request.method == "PATCH" else [IsProjectMember()]
