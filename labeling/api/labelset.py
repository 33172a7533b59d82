"""The label set: its versions (members), and add / rename / retire / merge / split (the project's managers)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsProjectManager, IsProjectMember
from labeling.models import LabelSetVersion, Project
from labeling.selectors.labelset import label_set_versions
from labeling.services.labelset import (
    LabelSetChange,
    labelset_add,
    labelset_merge,
    labelset_rename,
    labelset_retire,
    labelset_split,
)


class LabelSetVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)

    class Meta:
        model = LabelSetVersion
        ref_name = "LabelSetVersion"
        fields = ("version", "labels", "operation", "data", "created_by", "created_at")


class LabelSetOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="label_set_version", help_text="the current label-set version")
    labels = serializers.JSONField(help_text="the current labels [{name, text, key, ...}]")
    history = LabelSetVersionSerializer(many=True, help_text="every version, oldest first")

    class Meta:
        ref_name = "LabelSet"


class LabelSetChangeOutputSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="version.version", help_text="the label-set version it made")
    labels = serializers.JSONField(source="version.labels")
    operation = serializers.CharField(source="version.operation")
    migrated = serializers.IntegerField(help_text="annotations moved to another label (rename, merge)")
    reopened = serializers.IntegerField(help_text="documents sent back to the queue (split)")
    review_closed = serializers.IntegerField(
        help_text="open disagreement review items the change dissolved: closed with a recorded, audited reason"
    )
    retrain_run = serializers.IntegerField(
        source="run.pk", allow_null=True, default=None, help_text="the training run requested on the new set"
    )

    class Meta:
        ref_name = "LabelSetChange"


class _Strict(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: "unknown field" for name in sorted(unknown)})
        return attrs


class LabelSetApi(BaseApi):
    permission_classes = [IsProjectMember]

    @extend_schema(operation_id="labelset_retrieve", responses=LabelSetOutputSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        data = {
            "label_set_version": project.label_set_version,
            "labels": project.labels,
            "history": label_set_versions(project=project),
        }
        return Response(LabelSetOutputSerializer(data).data)


class _LabelSetChangeApi(BaseApi):
    permission_classes = [IsProjectManager]

    def _answer(self, change: LabelSetChange) -> Response:
        return Response(LabelSetChangeOutputSerializer(change).data)

    def _input(self, request: Request, serializer: type[serializers.Serializer]) -> dict[str, Any]:
        data = serializer(data=request.data)
        data.is_valid(raise_exception=True)
        return dict(data.validated_data)


_NAME = {"max_length": 64, "help_text": "a label name: 1-64 letters, digits or _.:-"}


class LabelSetAddApi(_LabelSetChangeApi):
    class InputSerializer(_Strict):
        name = serializers.CharField(**_NAME)
        text = serializers.CharField(required=False, max_length=200, help_text="shown on the pages (default: name)")
        key = serializers.CharField(
            required=False, allow_blank=True, max_length=1, help_text="keyboard key (default: the first free one)"
        )

        class Meta:
            ref_name = "LabelSetAdd"

    @extend_schema(operation_id="labelset_add", request=InputSerializer, responses=LabelSetChangeOutputSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project: Project = project_or_404(project_id)
        return self._answer(
            labelset_add(project=project, by=request.user, **self._input(request, self.InputSerializer))
        )


class LabelSetRenameApi(_LabelSetChangeApi):
    class InputSerializer(_Strict):
        label = serializers.CharField(**_NAME)
        new_name = serializers.CharField(**_NAME)
        text = serializers.CharField(required=False, max_length=200)

        class Meta:
            ref_name = "LabelSetRename"

    @extend_schema(
        operation_id="labelset_rename", request=InputSerializer, responses=LabelSetChangeOutputSerializer
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        return self._answer(
            labelset_rename(project=project, by=request.user, **self._input(request, self.InputSerializer))
        )


class LabelSetRetireApi(_LabelSetChangeApi):
    class InputSerializer(_Strict):
        label = serializers.CharField(**_NAME)

        class Meta:
            ref_name = "LabelSetRetire"

    @extend_schema(
        operation_id="labelset_retire", request=InputSerializer, responses=LabelSetChangeOutputSerializer
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        return self._answer(
            labelset_retire(project=project, by=request.user, **self._input(request, self.InputSerializer))
        )


class LabelSetMergeApi(_LabelSetChangeApi):
    class InputSerializer(_Strict):
        labels = serializers.ListField(
            child=serializers.CharField(**_NAME), min_length=1, max_length=100, help_text="the labels merged away"
        )
        into = serializers.CharField(**{**_NAME, "help_text": "the current label they are merged into"})

        class Meta:
            ref_name = "LabelSetMerge"

    @extend_schema(operation_id="labelset_merge", request=InputSerializer, responses=LabelSetChangeOutputSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        return self._answer(
            labelset_merge(project=project, by=request.user, **self._input(request, self.InputSerializer))
        )


class LabelSetSplitApi(_LabelSetChangeApi):
    class InputSerializer(_Strict):
        label = serializers.CharField(**_NAME)
        new_labels = serializers.ListField(
            child=serializers.JSONField(),
            min_length=2,
            max_length=26,
            help_text='the labels replacing it: names, or {"name", "text", "key"} objects',
        )

        class Meta:
            ref_name = "LabelSetSplit"

    @extend_schema(operation_id="labelset_split", request=InputSerializer, responses=LabelSetChangeOutputSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        return self._answer(
            labelset_split(project=project, by=request.user, **self._input(request, self.InputSerializer))
        )
