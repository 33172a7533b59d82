from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def copy_document_project(apps, schema_editor):
    """Existing leases get their document's project (one UPDATE)."""
    Assignment = apps.get_model("labeling", "Assignment")
    Document = apps.get_model("labeling", "Document")
    project = Document.objects.filter(pk=OuterRef("document_id")).values("project_id")[:1]
    Assignment.objects.update(project_id=Subquery(project))


class Migration(migrations.Migration):

    dependencies = [
        ("labeling", "0003_queue_open_predictions"),
    ]

    operations = [
        migrations.AddField(
            model_name="assignment",
            name="project",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="labeling.project",
            ),
        ),
        migrations.RunPython(copy_document_project, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="assignment",
            name="project",
            field=models.ForeignKey(
                editable=False, on_delete=models.deletion.CASCADE, related_name="+", to="labeling.project"
            ),
        ),
        migrations.AddIndex(
            model_name="assignment",
            index=models.Index(fields=["project", "annotator", "state"], name="assignment_project_annotator"),
        ),
    ]
