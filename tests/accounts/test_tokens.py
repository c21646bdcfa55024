"""API tokens: the key works, is shown once, and the database never holds it."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from rest_framework.test import APIClient

from ovmweb.accounts import tokens
from ovmweb.accounts.models import ApiToken
from tests.factories import SuperUserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin():
    return SuperUserFactory(username="admin")


def api_status(key: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/vms/").status_code


def database_values() -> list[str]:
    """Every value of every column of every table, as text."""
    values = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            values += [str(v) for row in cursor.fetchall() for v in row if v is not None]
    return values


def test_the_command_prints_a_key_that_works_and_the_database_holds_no_copy(admin):
    out = StringIO()
    call_command("create_api_token", "admin", stdout=out)
    key = out.getvalue().strip()
    assert len(key) == 40
    assert not [v for v in database_values() if key in v]
    assert api_status(key) == 200
    assert api_status(key[:-1] + ("0" if key[-1] != "0" else "1")) == 401  # same prefix, wrong key
    assert api_status("not-the-key") == 401


def test_drf_create_token_still_works_and_reset_revokes(admin):
    first, second = StringIO(), StringIO()
    call_command("drf_create_token", "admin", stdout=first)
    call_command("drf_create_token", "admin", "-r", stdout=second)
    assert api_status(second.getvalue().strip()) == 200
    assert api_status(first.getvalue().strip()) == 401
    assert ApiToken.objects.filter(user=admin).count() == 1


def test_an_inactive_users_token_is_refused(admin):
    _, key = tokens.create_token(user=admin)
    admin.is_active = False
    admin.save()
    assert api_status(key) == 401


def test_a_refused_token_is_logged_without_the_key(admin, caplog):
    _, key = tokens.create_token(user=admin)
    wrong = key[:8] + "f" * 32 if key[8:] != "f" * 32 else key[:8] + "e" * 32
    with caplog.at_level("WARNING", logger="ovmweb.security"):
        assert api_status(wrong) == 401
    assert "API token refused" in caplog.text and wrong not in caplog.text


def test_the_admin_shows_a_new_key_once(client, admin):
    client.force_login(admin)
    response = client.post("/admin/accounts/apitoken/add/", {"user": admin.pk, "name": "ci"})
    assert response.status_code == 200
    token = ApiToken.objects.get()
    key = response.context["key"]
    assert response.content.decode().count(key) == 1
    assert token.name == "ci" and token.digest == tokens.digest(key)
    assert api_status(key) == 200
    for page in ("/admin/accounts/apitoken/", f"/admin/accounts/apitoken/{token.pk}/change/"):
        shown = client.get(page)
        assert shown.status_code == 200 and key not in shown.content.decode()
        assert token.prefix in shown.content.decode()


def test_drf_authtoken_keys_are_hashed_by_the_migration(admin):
    from django.apps import apps

    migration = __import__("ovmweb.accounts.migrations.0002_hash_legacy_tokens", fromlist=["hash_legacy_tokens"])
    legacy_key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamp)")
        cursor.execute(
            "INSERT INTO authtoken_token (key, user_id, created) VALUES (%s, %s, %s)",
            [legacy_key, admin.pk, "2024-01-02 03:04:05"],
        )
    migration.hash_legacy_tokens(apps, connection.schema_editor())

    assert "authtoken_token" not in connection.introspection.table_names()
    assert not [v for v in database_values() if legacy_key in v]
    token = ApiToken.objects.get(user=admin)
    assert token.created.year == 2024
    assert api_status(legacy_key) == 200
