"""REST API under /api/v1/, the schema and docs, and /healthz, /readyz, /metrics (mounted at the site root)."""

from __future__ import annotations

from django.urls import path, re_path

from labeling.api import (
    audit,
    documents,
    guidelines,
    health,
    members,
    metrics,
    models,
    projects,
    queue,
    review,
    stats,
    team,
    webhooks,
)
from labeling.api.errors import json_not_found

P = "api/v1/projects/<int:project_id>"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.MetricsApi.as_view(), name="metrics"),
    path("api/v1/schema/", health.SchemaApi.as_view(), name="api-schema"),
    path("api/docs/", health.DocsApi.as_view(), name="api-docs"),
    path("api/docs/assets/<str:name>", health.docs_asset, name="api-docs-asset"),
    # projects
    path("api/v1/projects/", projects.ProjectCollectionApi.as_view(), name="api-projects"),
    path(f"{P}/", projects.ProjectItemApi.as_view(), name="api-project"),
    path(f"{P}/stats", stats.ProjectStatsApi.as_view(), name="api-project-stats"),
    path(f"{P}/export", stats.ProjectExportApi.as_view(), name="api-project-export"),
    path(f"{P}/guidelines", guidelines.GuidelinesApi.as_view(), name="api-guidelines"),
    # members
    path(f"{P}/members/", members.MemberCollectionApi.as_view(), name="api-members"),
    path(f"{P}/members/changes", members.MemberChangeListApi.as_view(), name="api-member-changes"),
    path(f"{P}/members/<int:user_id>", members.MemberItemApi.as_view(), name="api-member"),
    # the audit log
    path(f"{P}/audit/", audit.ProjectAuditApi.as_view(), name="api-project-audit"),
    path("api/v1/audit/", audit.SiteAuditApi.as_view(), name="api-audit"),
    # documents and imports
    path(f"{P}/documents/", documents.DocumentCollectionApi.as_view(), name="api-documents"),
    path(f"{P}/documents/<int:document_id>", documents.DocumentDetailApi.as_view(), name="api-document"),
    path(f"{P}/documents/<int:document_id>/flags", guidelines.DocumentFlagApi.as_view(), name="api-document-flag"),
    path(f"{P}/flags/", guidelines.FlagListApi.as_view(), name="api-flags"),
    path(f"{P}/imports/", documents.ImportCreateApi.as_view(), name="api-imports"),
    path(f"{P}/imports/<int:job_id>", documents.ImportDetailApi.as_view(), name="api-import"),
    # queue, assignments, annotations
    path(f"{P}/queue/next", queue.QueueNextApi.as_view(), name="api-queue-next"),
    path(
        "api/v1/assignments/<int:assignment_id>/renew", queue.AssignmentRenewApi.as_view(), name="api-renew"
    ),
    path("api/v1/assignments/<int:assignment_id>/skip", queue.AssignmentSkipApi.as_view(), name="api-skip"),
    path(
        "api/v1/assignments/<int:assignment_id>/release",
        queue.AssignmentReleaseApi.as_view(),
        name="api-release",
    ),
    path(
        "api/v1/assignments/<int:assignment_id>/annotation",
        queue.AnnotationCreateApi.as_view(),
        name="api-annotate",
    ),
    path(
        "api/v1/annotations/<int:annotation_id>", queue.AnnotationUpdateApi.as_view(), name="api-annotation"
    ),
    path(f"{P}/annotations", queue.AnnotationListApi.as_view(), name="api-annotations"),
    # team figures
    path(f"{P}/agreement", team.AgreementApi.as_view(), name="api-project-agreement"),
    path(f"{P}/quality", team.QualityApi.as_view(), name="api-project-quality"),
    # review and adjudication
    path(f"{P}/review/next", review.ReviewNextApi.as_view(), name="api-review-next"),
    path(f"{P}/review/items/", review.ReviewListApi.as_view(), name="api-review-items"),
    path(f"{P}/review/items/<int:item_id>", review.ReviewItemApi.as_view(), name="api-review-item"),
    path(
        f"{P}/review/items/<int:item_id>/decision", review.ReviewDecideApi.as_view(), name="api-review-decide"
    ),
    path(
        f"{P}/review/items/<int:item_id>/comments", review.ReviewCommentApi.as_view(), name="api-review-comment"
    ),
    path(
        f"{P}/review/items/<int:item_id>/release", review.ReviewReleaseApi.as_view(), name="api-review-release"
    ),
    path(f"{P}/review/items/<int:item_id>/renew", review.ReviewRenewApi.as_view(), name="api-review-renew"),
    # predictions, models, training
    path(f"{P}/predict", models.PredictApi.as_view(), name="api-predict"),
    path(f"{P}/models/", models.ModelListApi.as_view(), name="api-models"),
    path(f"{P}/models/<int:model_id>/promote", models.ModelPromoteApi.as_view(), name="api-model-promote"),
    path(f"{P}/models/rollback", models.ModelRollbackApi.as_view(), name="api-model-rollback"),
    path(f"{P}/training-runs/", models.TrainingRunCollectionApi.as_view(), name="api-training-runs"),
    # webhooks
    path(f"{P}/webhooks/", webhooks.WebhookCollectionApi.as_view(), name="api-webhooks"),
    path(f"{P}/webhooks/<int:webhook_id>", webhooks.WebhookItemApi.as_view(), name="api-webhook"),
    path(f"{P}/webhooks/<int:webhook_id>/ping", webhooks.WebhookPingApi.as_view(), name="api-webhook-ping"),
    path(
        f"{P}/webhooks/<int:webhook_id>/deliveries/",
        webhooks.DeliveryListApi.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        f"{P}/webhooks/<int:webhook_id>/deliveries/<int:delivery_id>/redeliver",
        webhooks.DeliveryRedeliverApi.as_view(),
        name="api-webhook-redeliver",
    ),
    # anything else under /api/ is a JSON 404, never the HTML page
    re_path(r"^api/", json_not_found),
]
