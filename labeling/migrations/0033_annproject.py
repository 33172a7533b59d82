"""``Annotation.project``: the document's project beside each label, so a project's annotation reads stop
joining every document of the table (#23).

Added nullable, backfilled by one set-based UPDATE (PostgreSQL and SQLite alike: one primary-key lookup
of the document per annotation), then made NOT NULL and indexed with ``created_at`` (counts, time ranges) and with ``id`` (the export). On PostgreSQL two
triggers keep it true whatever path writes: an annotation inserted without a project gets its document's,
one naming another project is refused, and a document cannot move to another project.
"""

import django.db.models.deletion
from django.db import migrations, models

BACKFILL = """
UPDATE labeling_annotation
SET project_id = (SELECT d.project_id FROM labeling_document d WHERE d.id = labeling_annotation.document_id)
WHERE project_id IS NULL
"""

GUARD_PROJECT = """
CREATE FUNCTION labeling_annotation_project() RETURNS trigger AS $$
DECLARE
    document_project bigint;
BEGIN
    SELECT d.project_id INTO document_project FROM labeling_document d WHERE d.id = NEW.document_id;
    IF NEW.project_id IS NULL THEN
        NEW.project_id := document_project;
    ELSIF NEW.project_id IS DISTINCT FROM document_project THEN
        RAISE EXCEPTION 'annotation of document % names project %, the document is in project %',
            NEW.document_id, NEW.project_id, document_project
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER labeling_annotation_project BEFORE INSERT OR UPDATE OF document_id, project_id
    ON labeling_annotation FOR EACH ROW EXECUTE FUNCTION labeling_annotation_project();
CREATE FUNCTION labeling_document_keeps_project() RETURNS trigger AS $$
BEGIN
    IF NEW.project_id IS DISTINCT FROM OLD.project_id THEN
        RAISE EXCEPTION 'document % cannot move from project % to %', OLD.id, OLD.project_id, NEW.project_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER labeling_document_keeps_project BEFORE UPDATE OF project_id
    ON labeling_document FOR EACH ROW EXECUTE FUNCTION labeling_document_keeps_project();
"""
DROP_GUARD_PROJECT = """
DROP TRIGGER IF EXISTS labeling_document_keeps_project ON labeling_document;
DROP FUNCTION IF EXISTS labeling_document_keeps_project();
DROP TRIGGER IF EXISTS labeling_annotation_project ON labeling_annotation;
DROP FUNCTION IF EXISTS labeling_annotation_project();
"""


def _postgresql_only(sql):
    """PostgreSQL's triggers; SQLite (``make demo``) has none (a trigger there would break on its table
    rebuilds, as in 0021): there the NOT NULL column fails a path that forgets the project, loudly."""

    def run(apps, schema_editor):
        connection = schema_editor.connection
        if connection.vendor != "postgresql":
            return
        for statement in connection.ops.prepare_sql_script(sql):
            schema_editor.execute(statement, params=None)

    return run


class Migration(migrations.Migration):

    dependencies = [
        ("labeling", "0032_deeptier_tiers"),
    ]

    operations = [
        migrations.AddField(
            model_name="annotation",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="labeling.project",
            ),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AlterField(
            model_name="annotation",
            name="project",
            field=models.ForeignKey(
                db_index=False,
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="labeling.project",
            ),
        ),
        migrations.AddIndex(
            model_name="annotation",
            index=models.Index(fields=["project", "created_at"], name="annotation_project_time"),
        ),
        migrations.AddIndex(
            model_name="annotation",
            index=models.Index(fields=["project", "id"], name="annotation_project_order"),
        ),
        migrations.RunPython(_postgresql_only(GUARD_PROJECT), _postgresql_only(DROP_GUARD_PROJECT)),
    ]
