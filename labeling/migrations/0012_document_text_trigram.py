"""A trigram index for the documents list's ``q=`` search (PostgreSQL; a no-op on the SQLite demo).

``text__icontains`` compiles to ``UPPER(text) LIKE UPPER('%q%')``; a GIN index over ``UPPER(text)``
with ``gin_trgm_ops`` answers it without reading every text of every project. SQLite has no
pg_trgm: the demo keeps its sequential scan, which is fine at demo sizes.
"""

from django.db import migrations

INDEX = "document_text_upper_trgm"


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {INDEX} ON labeling_document USING gin (UPPER(text) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX IF EXISTS {INDEX}")  # the extension stays: others may use it


class Migration(migrations.Migration):
    dependencies = [("labeling", "0011_hash_plain_api_tokens")]
    operations = [migrations.RunPython(forwards, backwards)]
