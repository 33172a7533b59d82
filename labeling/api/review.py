"""Review and adjudication: the reviewers' queue, an item's detail, decide, comment, release.

Reviewers and managers of the project (and staff). The review page drives these endpoints: lease the
next item (with its labels, annotators, the model's prediction and the reason it is in review),
then decide it, comment on it, or give it back.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, get_or_404, project_or_404
from labeling.api.permissions import IsProjectReviewer
from labeling.models import FlagKind, ReviewItem, ReviewReason, ReviewState
from labeling.selectors.review import review_item_detail, review_items, review_summary
from labeling.services.review import (
    MAX_COMMENT_CHARS,
    review_comment,
    review_decide,
    review_lease_next,
    review_release,
    review_renew,
)


class ReviewLabelSerializer(serializers.Serializer):
    annotation_id = serializers.IntegerField()
    annotator = serializers.CharField()
    label = serializers.CharField()
    labeled_at = serializers.DateTimeField()
    duration_ms = serializers.IntegerField(allow_null=True)

    class Meta:
        ref_name = "ReviewLabel"


class ReviewDecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reviewer = serializers.CharField()
    action = serializers.ChoiceField(choices=["accept", "override"])
    label = serializers.CharField()
    replaced_label = serializers.CharField(help_text="the final label before (empty: there was none)")
    replaced_by = serializers.CharField(help_text="who had decided it: annotators, reviewer:<name> or empty")
    comment = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ReviewDecision"


class ReviewCommentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    author = serializers.CharField()
    text = serializers.CharField()
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ReviewComment"


class ReviewFlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=FlagKind.choices)
    author = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "ReviewFlag"


class ReviewItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    reason = serializers.ChoiceField(choices=ReviewReason.choices, help_text="why it is in review")
    score = serializers.FloatField(allow_null=True, help_text="reason noise: how likely mislabeled")
    state = serializers.ChoiceField(choices=ReviewState.choices)
    reviewer = serializers.CharField(allow_null=True, help_text="who holds (or decided) it")
    leased_until = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    decided_at = serializers.DateTimeField(allow_null=True)
    document = inline_serializer(
        "ReviewDocument",
        {
            "id": serializers.IntegerField(),
            "external_id": serializers.CharField(allow_null=True),
            "text": serializers.CharField(),
            "metadata": serializers.JSONField(),
            "split": serializers.CharField(),
            "labels_required": serializers.IntegerField(),
        },
    )
    labels = ReviewLabelSerializer(many=True, help_text="every annotator's label, as given")
    consensus = inline_serializer(
        "ReviewConsensus",
        {
            "label": serializers.CharField(allow_null=True),
            "agreement": serializers.FloatField(help_text="the top label's share of the labels"),
            "reason": serializers.CharField(help_text="agreed, tie, low_agreement or no_answer"),
        },
    )
    final_label = serializers.CharField(allow_null=True, help_text="what the model trains on now")
    decided_by = serializers.CharField(allow_blank=True, help_text="annotators, reviewer, or empty")
    prediction = serializers.JSONField(
        allow_null=True, help_text="the champion's {model_version, label, confidence, probabilities}; null on holdout"
    )
    decisions = ReviewDecisionSerializer(many=True)
    comments = ReviewCommentSerializer(many=True)
    flags = ReviewFlagSerializer(many=True, help_text="annotators' flags on this item (unclear, offensive, duplicate)")
    label_set = serializers.JSONField(help_text="the project's labels [{name, text, key}]")

    class Meta:
        ref_name = "ReviewItem"


class _ItemApi(BaseApi):
    permission_classes = [IsProjectReviewer]

    def item(self, project_id: int, item_id: int) -> ReviewItem:
        return get_or_404(ReviewItem, item_id, project_id=project_id)

    def detail(self, item: ReviewItem) -> Response:
        item = ReviewItem.objects.select_related("document", "project", "reviewer").get(pk=item.pk)
        return Response(ReviewItemSerializer(review_item_detail(item)).data)


class ReviewNextApi(_ItemApi):
    class InputSerializer(serializers.Serializer):
        exclude = serializers.ListField(
            child=serializers.IntegerField(min_value=1), max_length=1000, required=False,
            help_text="review item ids not to lease now (the ones the caller skipped)",
        )

        class Meta:
            ref_name = "ReviewNext"

    @extend_schema(
        operation_id="review_next",
        request=InputSerializer,
        responses={200: ReviewItemSerializer, 204: OpenApiResponse(description="nothing left to review")},
        description="Lease the next open review item to the caller (or return the one it holds): "
        "disagreements first, then likely-mislabeled items by score, then audits. Never a document "
        "the caller labeled, nor an item in `exclude`.",
    )
    def post(self, request: Request, project_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        item = review_lease_next(
            project=project_or_404(project_id), reviewer=request.user, exclude=data.validated_data.get("exclude", [])
        )
        if item is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self.detail(item)


class ReviewListApi(_ItemApi):
    @extend_schema(
        operation_id="review_list",
        parameters=[OpenApiParameter("state", enum=ReviewState.values, required=False)],
        responses=inline_serializer(
            "ReviewList",
            {
                "summary": serializers.JSONField(help_text="open (by reason), decided, changed_label, flagged_noise"),
                "items": inline_serializer(
                    "ReviewListItem",
                    {
                        "id": serializers.IntegerField(),
                        "document_id": serializers.IntegerField(),
                        "reason": serializers.CharField(),
                        "score": serializers.FloatField(allow_null=True),
                        "state": serializers.CharField(),
                        "reviewer": serializers.CharField(allow_null=True),
                        "created_at": serializers.DateTimeField(),
                    },
                    many=True,
                ),
            },
        ),
        description="The project's review items, newest first (at most 500), and the review counts.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        state = request.query_params.get("state")
        if state is not None and state not in ReviewState.values:
            raise serializers.ValidationError({"state": f"must be one of {ReviewState.values}"})
        items = [
            {
                "id": i.pk,
                "document_id": i.document_id,
                "reason": i.reason,
                "score": i.score,
                "state": i.state,
                "reviewer": i.reviewer.get_username() if i.reviewer else None,
                "created_at": i.created_at,
            }
            for i in review_items(project=project, state=state)[:500]
        ]
        return Response({"summary": review_summary(project=project), "items": items})


class ReviewItemApi(_ItemApi):
    @extend_schema(operation_id="review_item", responses=ReviewItemSerializer)
    def get(self, request: Request, project_id: int, item_id: int) -> Response:
        return self.detail(self.item(project_id, item_id))


class _Strict(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({field: "unknown field" for field in sorted(unknown)})
        return attrs


class ReviewDecideApi(_ItemApi):
    class InputSerializer(_Strict):
        label = serializers.CharField(max_length=64, help_text="one of the given labels (accept) or another (override)")
        comment = serializers.CharField(required=False, allow_blank=True, max_length=MAX_COMMENT_CHARS)

        class Meta:
            ref_name = "ReviewDecide"

    @extend_schema(
        operation_id="review_decide",
        request=InputSerializer,
        responses={201: ReviewItemSerializer},
        description="Decide an open item: the label becomes the document's final label; the annotators' "
        "labels stay as given. 409 not_in_review for a decided item, 409 review_leased when another "
        "reviewer holds it; 400 names the field for a label outside the set.",
    )
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        item = self.item(project_id, item_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        review_decide(item=item, reviewer=request.user, **data.validated_data)
        response = self.detail(item)
        response.status_code = status.HTTP_201_CREATED
        return response


class ReviewCommentApi(_ItemApi):
    class InputSerializer(_Strict):
        text = serializers.CharField(max_length=MAX_COMMENT_CHARS)

        class Meta:
            ref_name = "ReviewCommentCreate"

    @extend_schema(operation_id="review_comment", request=InputSerializer, responses={201: ReviewCommentSerializer})
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        item = self.item(project_id, item_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        comment = review_comment(item=item, author=request.user, text=data.validated_data["text"])
        body = {"id": comment.pk, "author": request.user.get_username(), "text": comment.text,
                "created_at": comment.created_at}
        return Response(ReviewCommentSerializer(body).data, status=status.HTTP_201_CREATED)


class ReviewReleaseApi(_ItemApi):
    @extend_schema(
        operation_id="review_release",
        request=None,
        responses=ReviewItemSerializer,
        description="Give the item back to the review queue (skip). 409 when it is decided or held by another.",
    )
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        item = review_release(item=self.item(project_id, item_id), reviewer=request.user)
        return self.detail(item)


class ReviewRenewApi(_ItemApi):
    @extend_schema(
        operation_id="review_renew",
        request=None,
        responses=ReviewItemSerializer,
        description="Extend the caller's hold on an item by the project's lease minutes (the review page "
        "renews while it shows the item). 409 review_leased when the caller does not hold it, "
        "409 not_in_review when it is decided.",
    )
    def post(self, request: Request, project_id: int, item_id: int) -> Response:
        item = review_renew(item=self.item(project_id, item_id), reviewer=request.user)
        return self.detail(item)
