"""The answer fields every endpoint that takes or shows an answer shares: ``label`` or ``labels``.

A single-label project answers with ``label`` (one name); a multi-label project with ``labels`` (a list
of names, ``[]`` when none applies). Which one a project takes is its label space's, checked by
``labeling.services.answers.answer_validate``; these serializers only carry the two fields.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from labeling.labelspace import LabelSpace
from labeling.models import LABEL_NAME_RE

MAX_SET = 64  # more names than any label set holds: a longer list is a 400 before it is read


class AnswerInputSerializer(serializers.Serializer):
    label = serializers.CharField(max_length=64, required=False, help_text="single-label projects: one label name")
    labels = serializers.ListField(
        child=serializers.RegexField(LABEL_NAME_RE.pattern, max_length=64),
        max_length=MAX_SET,
        allow_empty=True,
        required=False,
        help_text="multi-label projects: the labels that apply, in any order ([] when none applies)",
    )


def answer_of(validated: dict[str, Any]) -> dict[str, Any]:
    """The answer fields the request sent (``label`` and/or ``labels``), for the service to check."""
    return {field: validated[field] for field in ("label", "labels") if field in validated}


class AnswerOutputMixin(serializers.Serializer):
    """Adds ``labels``: the answer as a list in a multi-label project, null in a single-label one."""

    labels = serializers.SerializerMethodField(
        help_text="multi-label projects: the answer as a list of names in label-set order ([] when none "
        "applies; `label` holds them joined by ','); null in single-label projects"
    )

    def _space(self, obj: Any) -> LabelSpace:
        space = self.context.get("space")
        return space if space is not None else obj.document.project.label_space

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), allow_null=True))
    def get_labels(self, obj: Any) -> list[str] | None:
        space = self._space(obj)
        return space.as_json(obj.label) if space.answer_field == "labels" else None
