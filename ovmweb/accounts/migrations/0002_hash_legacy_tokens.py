"""Tokens made by DRF's rest_framework.authtoken (which stored keys in plain text) become
hashed ApiTokens that accept the same keys; then DRF's table, and with it every plain
key, is dropped. A database that never had that app is left as it is."""

import hashlib
from datetime import UTC

from django.db import migrations
from django.utils import timezone
from django.utils.dateparse import parse_datetime

LEGACY_TABLE = "authtoken_token"


def hash_legacy_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("accounts", "ApiToken")
    with connection.cursor() as cursor:
        # Standard SQL quoting ("key" is a keyword somewhere), the same on SQLite and PostgreSQL.
        cursor.execute('SELECT "key", "user_id", "created" FROM "authtoken_token"')
        rows = cursor.fetchall()
    ApiToken.objects.bulk_create(
        ApiToken(
            user_id=user_id,
            name="migrated from DRF authtoken",
            prefix=key[:8],
            digest=hashlib.sha256(key.encode()).hexdigest(),
            created=_aware(created),
        )
        for key, user_id, created in rows
    )
    schema_editor.execute('DROP TABLE "authtoken_token"')
    # So that re-adding DRF's app would create its table afresh instead of finding it "applied".
    schema_editor.execute("DELETE FROM django_migrations WHERE app = %s", ["authtoken"])


def _aware(value):
    # A raw cursor may hand back the stored text (SQLite) and a naive time (stored as UTC).
    value = parse_datetime(value) if isinstance(value, str) else value
    if value is None:
        return timezone.now()
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial")]

    operations = [migrations.RunPython(hash_legacy_tokens, migrations.RunPython.noop)]
