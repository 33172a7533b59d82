# The predictions' own document_id index goes: the unique (document, model_version) index starts with
# the same column. Only the index is dropped; Django's AlterField would also drop and re-validate the
# foreign key, a scan of every prediction under an exclusive lock.

import django.db.models.deletion
from django.db import migrations, models

INDEX = "labeling_prediction_document_id_994e265c"


class Migration(migrations.Migration):
    dependencies = [
        ("labeling", "0033_annproject"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="prediction",
                    name="document",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="predictions",
                        to="labeling.document",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f"DROP INDEX IF EXISTS {INDEX}",
                    reverse_sql=f"CREATE INDEX IF NOT EXISTS {INDEX} ON labeling_prediction (document_id)",
                ),
            ],
        ),
    ]
