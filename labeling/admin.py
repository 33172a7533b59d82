from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest

from labeling import models as m
from labeling.services.projects import project_delete, project_record_admin_save


@admin.register(m.Project)
class ProjectAdmin(admin.ModelAdmin):
    """Adding, changing and deleting a project here is audited like the API's writes."""

    list_display = ("id", "name", "acquisition_strategy", "retrain_after", "holdout_fraction", "created_at")
    list_filter = ("acquisition_strategy", "task_type")
    search_fields = ("name", "description")

    # The admin runs each form in a transaction: the save and its audit event commit together.
    def save_model(self, request: HttpRequest, obj: m.Project, form: ModelForm, change: bool) -> None:
        before = None
        if change:
            stored = m.Project.objects.get(pk=obj.pk)
            before = {field: getattr(stored, field) for field in form.changed_data}
        super().save_model(request, obj, form, change)
        project_record_admin_save(project=obj, before=before, by=request.user)

    def delete_model(self, request: HttpRequest, obj: m.Project) -> None:
        project_delete(project=obj, by=request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[m.Project]) -> None:
        for project in queryset:
            project_delete(project=project, by=request.user)


@admin.register(m.AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only (no add, change or delete, here or in the database)."""

    list_display = ("created_at", "action", "actor_name", "project_name", "target_type", "target_repr")
    list_filter = ("action", "target_type", "created_at", "project_name")
    search_fields = ("actor_name", "project_name", "target_repr", "target_id")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in m.AuditEvent._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(m.Document)
class DocumentAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "external_id", "split", "is_labeled", "short_text", "created_at")
    list_filter = ("project", "split", "is_labeled")
    search_fields = ("external_id", "text", "content_hash")
    raw_id_fields = ("project",)
    list_select_related = ("project",)

    @admin.display(description="text")
    def short_text(self, obj: m.Document) -> str:
        return obj.text[:80]


@admin.register(m.Annotation)
class AnnotationAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "annotator", "label", "source", "duration_ms", "created_at")
    list_filter = ("source", "label", "project")
    search_fields = ("document__text", "document__external_id", "annotator__username")
    raw_id_fields = ("document", "assignment", "model_version")


@admin.register(m.AnnotationRevision)
class AnnotationRevisionAdmin(admin.ModelAdmin):
    list_display = ("id", "annotation", "previous_label", "new_label", "changed_by", "changed_at")
    raw_id_fields = ("annotation",)


@admin.register(m.Assignment)
class AssignmentAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "annotator", "state", "leased_until", "created_at")
    list_filter = ("state", "project")
    search_fields = ("annotator__username", "document__external_id")
    raw_id_fields = ("document",)


@admin.register(m.ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    # Promote and roll back through the API (or the dashboard), where the change is audited and its
    # rescoring queued; a status typed in here would skip both.
    readonly_fields = ("status", "promoted_at")
    list_display = ("id", "project", "version", "status", "train_label_count", "created_at", "promoted_at")
    list_filter = ("status", "project")
    search_fields = ("artifact_path", "encoder_name", "decision_reason")


@admin.register(m.Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = ("id", "document", "model_version", "predicted_label", "confidence", "mutual_info",
                    "acquisition_score", "scored_at")
    list_filter = ("model_version__project", "model_version", "predicted_label")
    search_fields = ("document__external_id", "document__text")
    raw_id_fields = ("document", "model_version")


@admin.register(m.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "trigger", "status", "stage", "progress", "labels_used", "promoted",
                    "created_at", "finished_at")
    list_filter = ("status", "trigger", "project")
    search_fields = ("error", "decision_reason")
    raw_id_fields = ("model_version",)


@admin.register(m.ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "file_format", "status", "rows_imported", "rows_duplicate",
                    "rows_rejected", "created_at")
    list_filter = ("status", "file_format", "project")


@admin.register(m.SsoIdentity)
class SsoIdentityAdmin(admin.ModelAdmin):
    """Which account each single sign-on subject signs in to; deleting a row unlinks it (the next login links anew)."""

    list_display = ("id", "user", "issuer", "subject", "created_at", "last_login_at")
    list_filter = ("issuer",)
    search_fields = ("user__username", "user__email", "subject")
    raw_id_fields = ("user",)
    readonly_fields = ("issuer", "subject", "created_at", "last_login_at")
