"""Documents: bulk add (JSON), file import (multipart), list with filters, detail."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, get_or_404, limit_uploads, project_or_404
from labeling.api.permissions import IsProjectIngest
from labeling.labelspace import label_space_for_model
from labeling.models import Document, ImportJob, LabelsAs, Split
from labeling.selectors.documents import DocumentFilters, document_detail, document_list
from labeling.services.documents import (
    MAX_ITEMS_PER_CALL,
    ON_CONFLICT,
    document_bulk_create,
    document_text_differs,
)
from labeling.services.import_jobs import import_job_start

_ITEM_SCHEMA = {
    "type": "object",
    "properties": {
        "text": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100_000,
            "description": "1 to 100,000 characters as sent (whitespace counts; not blank); no NUL; "
            "stored exactly as sent",
        },
        "external_id": {
            "type": "string",
            "nullable": True,
            "maxLength": 255,
            "description": "your id; re-posting it with the same text returns the stored document, "
            "with another text a 409 (see on_conflict)",
        },
        "metadata": {"type": "object", "additionalProperties": True},
    },
    "required": ["text"],
}
DOCUMENTS_REQUEST = {
    "application/json": {
        "oneOf": [
            _ITEM_SCHEMA,
            {"type": "array", "items": _ITEM_SCHEMA, "minItems": 1, "maxItems": MAX_ITEMS_PER_CALL},
        ]
    }
}


class DocumentCreatedSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    id = serializers.IntegerField()
    external_id = serializers.CharField(allow_null=True)
    split = serializers.CharField()
    created = serializers.BooleanField(
        help_text="false: this external_id existed; the stored document is returned"
    )
    text_differs = serializers.BooleanField(
        help_text="true: the stored text differs from the one sent and was kept (on_conflict=skip)"
    )

    class Meta:
        ref_name = "DocumentCreated"


class DocumentCreateResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    existing = serializers.IntegerField()
    results = DocumentCreatedSerializer(many=True)

    class Meta:
        ref_name = "DocumentCreateResult"


class DocumentOutputSerializer(serializers.ModelSerializer):
    champion_label = serializers.CharField(allow_null=True, read_only=True)
    champion_confidence = serializers.FloatField(allow_null=True, read_only=True)
    champion_score = serializers.FloatField(allow_null=True, read_only=True)

    class Meta:
        model = Document
        ref_name = "Document"
        fields = (
            "id",
            "external_id",
            "text",
            "metadata",
            "split",
            "is_labeled",
            "created_at",
            "champion_label",
            "champion_confidence",
            "champion_score",
        )


class DocumentCursor(CursorPagination):
    ordering = "pk"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 100  # full texts (up to 100,000 characters each): bounded per page


class DocumentCollectionApi(BaseApi):
    """POST adds documents (ingest role); GET lists them with filters (ingest role)."""

    permission_classes = [IsProjectIngest]

    class CreateParamsSerializer(serializers.Serializer):
        on_conflict = serializers.ChoiceField(
            choices=list(ON_CONFLICT),
            default="error",
            help_text="a known external_id with a different text: error = 409, nothing stored; "
            "skip = keep the stored text (text_differs: true in its result)",
        )

        class Meta:
            ref_name = "DocumentCreateParams"

    class FilterSerializer(serializers.Serializer):
        labeled = serializers.BooleanField(required=False, allow_null=True, default=None)
        split = serializers.ChoiceField(choices=Split.choices, required=False)
        predicted_label = serializers.CharField(required=False, max_length=64)
        uncertainty_min = serializers.FloatField(required=False)
        uncertainty_max = serializers.FloatField(required=False)
        q = serializers.CharField(required=False, max_length=500)

        class Meta:
            ref_name = "DocumentFilter"

    @extend_schema(
        operation_id="documents_create",
        request=DOCUMENTS_REQUEST,
        parameters=[CreateParamsSerializer],
        responses={201: DocumentCreateResultSerializer, 200: DocumentCreateResultSerializer},
        description="One document object or a list of up to 1,000. All or nothing: one bad item rejects the "
        "request (400, fields name items[i].field). A known external_id with the same text returns the "
        "stored document; with a different text: 409 external_id_conflict (or on_conflict=skip).",
    )
    def post(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        params = self.CreateParamsSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        payload: Any = request.data
        items = payload if isinstance(payload, list) else [payload]
        results = document_bulk_create(
            project=project, items=items, on_conflict=params.validated_data["on_conflict"]
        )
        created = sum(1 for _, was_created in results if was_created)
        body = {
            "created": created,
            "existing": len(results) - created,
            "results": [
                {
                    "index": i,
                    "id": doc.pk,
                    "external_id": doc.external_id,
                    "split": doc.split,
                    "created": was_created,
                    "text_differs": not was_created and document_text_differs(doc, items[i]["text"]),
                }
                for i, (doc, was_created) in enumerate(results)
            ],
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(
        operation_id="documents_list",
        parameters=[FilterSerializer],
        responses=DocumentOutputSerializer(many=True),
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        params = self.FilterSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        filters = DocumentFilters(
            labeled=p.get("labeled"),
            split=p.get("split"),
            predicted_label=p.get("predicted_label"),
            uncertainty_min=p.get("uncertainty_min"),
            uncertainty_max=p.get("uncertainty_max"),
            search=p.get("q"),
        )
        paginator = DocumentCursor()
        page = paginator.paginate_queryset(
            document_list(project=project, filters=filters), request, view=self
        )
        return paginator.get_paginated_response(DocumentOutputSerializer(page, many=True).data)


class AnnotationBriefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    label = serializers.CharField()
    annotator = serializers.CharField(source="annotator.username")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    predicted_label = serializers.CharField()
    predicted_confidence = serializers.FloatField(allow_null=True)

    class Meta:
        ref_name = "AnnotationBrief"


class PredictionSerializer(serializers.Serializer):
    model_version = serializers.IntegerField(source="model_version.version")
    model_status = serializers.CharField(source="model_version.status")
    label = serializers.CharField(source="predicted_label")
    confidence = serializers.FloatField()
    probabilities = serializers.SerializerMethodField()
    entropy = serializers.FloatField()
    expected_entropy = serializers.FloatField()
    mutual_info = serializers.FloatField()
    margin = serializers.FloatField()
    acquisition_score = serializers.FloatField()
    scored_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Prediction"

    def get_probabilities(self, obj: Any) -> dict[str, float]:
        return label_space_for_model(obj.model_version).probabilities(obj.probabilities)


class DocumentDetailApi(BaseApi):
    permission_classes = [IsProjectIngest]

    class OutputSerializer(serializers.ModelSerializer):
        annotations = AnnotationBriefSerializer(many=True)
        predictions = PredictionSerializer(many=True)

        class Meta:
            model = Document
            ref_name = "DocumentDetail"
            fields = (
                "id",
                "external_id",
                "text",
                "metadata",
                "split",
                "is_labeled",
                "created_at",
                "annotations",
                "predictions",
            )

    @extend_schema(
        operation_id="documents_retrieve",
        responses=OutputSerializer,
        description="Labels: everyone's for managers, only the caller's own otherwise (the ingest role sees "
        "none). Predictions: none while the document is an unlabeled holdout item (labeled blind).",
    )
    def get(self, request: Request, project_id: int, document_id: int) -> Response:
        project = project_or_404(project_id)
        try:
            document = document_detail(project=project, document_id=document_id, user=request.user)
        except Document.DoesNotExist:
            raise NotFound(f"document {document_id} does not exist in project {project_id}") from None
        return Response(self.OutputSerializer(document).data)


class ImportJobSerializer(serializers.ModelSerializer):
    class Meta:
        model = ImportJob
        ref_name = "ImportJob"
        fields = (
            "id",
            "project",
            "file_format",
            "text_col",
            "external_id_col",
            "label_col",
            "labels_as",
            "source_col",
            "prediction_col",
            "prediction_score_col",
            "annotator_col",
            "status",
            "progress",
            "rows_total",
            "rows_imported",
            "rows_labeled",
            "rows_duplicate",
            "rows_rejected",
            "rejected",
            "error",
            "attempts",
            "detail",
            "created_at",
            "finished_at",
        )


class ImportCreateApi(BaseApi):
    permission_classes = [IsProjectIngest]
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        file = serializers.FileField(help_text="CSV, TSV, JSON Lines or Parquet")
        format = serializers.ChoiceField(
            choices=["csv", "tsv", "jsonl", "parquet"],
            required=False,
            help_text="default: from the file name",
        )
        text_col = serializers.CharField(default="text", max_length=200)
        external_id_col = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
        label_col = serializers.CharField(
            required=False,
            allow_blank=True,
            default="",
            max_length=200,
            help_text="the label column: gold labels (evaluation only, never shown) or, with "
            "labels_as=training, training labels",
        )
        labels_as = serializers.ChoiceField(
            choices=LabelsAs.choices,
            default=LabelsAs.GOLD,
            help_text="gold (default): label_col is evaluation-only gold; training: each label is an "
            "annotation with source import (holdout documents keep it as gold and are still labeled blind); "
            "one label outside the label set is a 400 and nothing is stored",
        )
        source_col = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=200,
            help_text="with labels_as=training: a column recorded as each label's source",
        )
        prediction_col = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=200,
            help_text="an external model's predicted label: a pre-annotation shown on the labeling page as a "
            "suggestion, never trained on; a label outside the label set is a 400 and nothing is stored",
        )
        prediction_score_col = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=200,
            help_text="with prediction_col: its score, a number from 0 to 1",
        )
        annotator_col = serializers.CharField(
            required=False, allow_blank=True, default="", max_length=200,
            help_text="with labels_as=training: a column naming, per row, the username of the project member "
            "who gave the label (manager, reviewer or annotator); empty cells and imports without it are "
            "credited to the alabel-import account; an unknown or non-member username is a 400 naming the row, "
            "and nothing is stored",
        )

        class Meta:
            ref_name = "ImportCreate"

    @extend_schema(
        operation_id="imports_create",
        request={"multipart/form-data": InputSerializer},
        responses={202: ImportJobSerializer},
    )
    def post(self, request: Request, project_id: int) -> Response:
        limit_uploads(request)  # before request.data streams the body
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        job = import_job_start(
            project=project,
            filename=upload.name,
            chunks=upload.chunks(),
            file_format=data.validated_data.get("format"),
            text_col=data.validated_data["text_col"],
            external_id_col=data.validated_data["external_id_col"],
            label_col=data.validated_data["label_col"],
            labels_as=data.validated_data["labels_as"],
            source_col=data.validated_data["source_col"],
            prediction_col=data.validated_data["prediction_col"],
            prediction_score_col=data.validated_data["prediction_score_col"],
            annotator_col=data.validated_data["annotator_col"],
            created_by=request.user,
        )
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailApi(BaseApi):
    permission_classes = [IsProjectIngest]

    @extend_schema(
        operation_id="imports_retrieve",
        responses=ImportJobSerializer,
        parameters=[OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH)],
    )
    def get(self, request: Request, project_id: int, job_id: int) -> Response:
        project = project_or_404(project_id)
        job = get_or_404(ImportJob, job_id, project=project)
        return Response(ImportJobSerializer(job).data)
