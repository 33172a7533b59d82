"""Hash the keys of DRF's plain-text tokens (rest_framework.authtoken, no longer installed) into ApiToken.

Every existing key keeps working, now stored as its digest only, with client "legacy" and the usual
expiry (TOKEN_TTL_DAYS from now); the plain rows are then deleted. Going back leaves the hashed rows
(a digest cannot be turned back into a key): re-issue keys with manage.py token_create after a rollback.
"""

from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

PLAIN_TABLE = "authtoken_token"


def hash_plain_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if PLAIN_TABLE not in connection.introspection.table_names():
        return  # a new install: DRF's token table was never created
    ApiToken = apps.get_model("labeling", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {PLAIN_TABLE}")
        rows = cursor.fetchall()
    expiry = timezone.now() + timedelta(days=settings.TOKEN_TTL_DAYS)
    ApiToken.objects.bulk_create(
        [
            ApiToken(
                digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id,
                created=created, expiry=expiry, client="legacy",
            )
            for key, user_id, created in rows
        ],
        ignore_conflicts=True,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {PLAIN_TABLE}")


class Migration(migrations.Migration):
    dependencies = [("labeling", "0010_api_tokens")]

    operations = [migrations.RunPython(hash_plain_tokens, migrations.RunPython.noop)]
