"""The audit trail in the UI and the API: the same filters, only for audit.view."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from ovmweb.audit import services
from ovmweb.audit.models import AuditAction, AuditRecord
from tests import factories

pytestmark = pytest.mark.django_db


def backdate(row, days):
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {AuditRecord._meta.db_table} SET created_at = %s WHERE id = %s",
            [timezone.now() - timedelta(days=days), row.pk],
        )


@pytest.fixture
def trail(alice):
    vm = factories.VirtualMachineFactory(name="db1")
    rows = {
        "alice_login": services.record(action=AuditAction.LOGIN, user=alice, obj=alice, address="10.0.0.1"),
        "bob_failed": services.record(action=AuditAction.LOGIN_FAILED, username="bob", address="10.0.0.2"),
        "alice_console": services.record(action=AuditAction.CONSOLE, user=alice, obj=vm, outcome="interactive"),
    }
    backdate(rows["alice_login"], 10)
    return rows, vm


def ids(rows):
    return sorted(r["id"] for r in rows)


API = "/api/v1/audit/"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, ["alice_login", "bob_failed", "alice_console"]),
        ({"user": "ALICE"}, ["alice_login", "alice_console"]),
        ({"action": "login_failed"}, ["bob_failed"]),
        ({"object": "db"}, ["alice_console"]),
        ({"object_type": "inventory.virtualmachine"}, ["alice_console"]),
        ({"since": "PLACEHOLDER-5"}, ["bob_failed", "alice_console"]),
        ({"until": "PLACEHOLDER-5"}, ["alice_login"]),
    ],
)
def test_the_api_filters(client, auditor, trail, query, expected):
    rows, _vm = trail
    query = {
        k: (timezone.now() - timedelta(days=5)).isoformat() if v == "PLACEHOLDER-5" else v for k, v in query.items()
    }
    client.force_login(auditor)
    response = client.get(API, query)
    assert response.status_code == 200, response.content
    # Logging the auditor in and giving it the permission were recorded too: look at the trail's rows.
    trail_ids = {row.pk for row in rows.values()}
    found = [pk for pk in ids(response.json()["results"]) if pk in trail_ids]
    assert found == sorted(rows[name].pk for name in expected)


def test_the_api_pages_and_shows_one_record(client, auditor, trail):
    rows, vm = trail
    client.force_login(auditor)
    body = client.get(API, {"limit": 1}).json()
    assert body["count"] == AuditRecord.objects.count() and len(body["results"]) == 1
    one = client.get(f"{API}{rows['alice_console'].pk}/").json()
    assert (one["user"], one["object_id"], one["action"]) == ("alice", str(vm.pk), "console")


def test_the_api_refuses_bad_filters_and_writes(client, auditor, trail):
    rows, _vm = trail
    client.force_login(auditor)
    assert client.get(API, {"action": "nope"}).status_code == 400
    assert client.get(API, {"since": "yesterday"}).status_code == 400
    assert client.delete(f"{API}{rows['bob_failed'].pk}/").status_code == 405
    assert client.post(API, {"action": "login"}, content_type="application/json").status_code == 405
    assert AuditRecord.objects.filter(pk=rows["bob_failed"].pk).exists()


def test_without_the_permission_api_and_page_refuse(client, alice, trail):
    rows, _vm = trail
    client.force_login(alice)
    assert client.get(API).status_code == 403
    assert client.get(f"{API}{rows['bob_failed'].pk}/").status_code in (403, 404)
    assert client.get("/audit/").status_code == 403
    alice.user_permissions.add(Permission.objects.get(codename="view_virtualmachine"))
    vms = client.get("/vms/")
    assert vms.status_code == 200 and 'href="/audit/"' not in vms.content.decode()


def test_the_page_filters_and_pages(client, auditor, trail):
    client.force_login(auditor)
    page = client.get("/audit/", {"user": "bob"})
    assert page.status_code == 200
    text = page.content.decode()
    assert "10.0.0.2" in text and "10.0.0.1" not in text
    text = client.get("/audit/", {"object": "db1"}).content.decode()
    assert "db1" in text and "10.0.0.2" not in text
    since = (timezone.now() - timedelta(days=5)).strftime("%Y-%m-%d %H:%M")
    text = client.get("/audit/", {"since": since}).content.decode()
    assert "10.0.0.2" in text and "10.0.0.1" not in text
    # A bad time is shown as an error; the other filters still apply.
    text = client.get("/audit/", {"since": "not a time", "user": "bob"}).content.decode()
    assert 'role="alert"' in text and "10.0.0.2" in text and "db1" not in text
    assert 'href="/audit/" aria-current="page"' in client.get("/audit/").content.decode()


def test_the_page_paginates(client, auditor):
    for i in range(55):
        services.record(action=AuditAction.LOGIN_FAILED, username=f"u{i}", address="10.0.0.9")
    client.force_login(auditor)
    first = client.get("/audit/", {"action": "login_failed"}).content.decode()
    assert "Page 1 of 2 (55 records)" in first and "action=login_failed&amp;page=2" in first
    second = client.get("/audit/", {"action": "login_failed", "page": 2}).content.decode()
    assert "Page 2 of 2" in second
