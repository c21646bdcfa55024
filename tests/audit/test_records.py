"""Each kind of record is written by doing the thing it records."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from ovmweb.audit import services
from ovmweb.audit.models import AuditAction, AuditRecord
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.services import job_submit
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories

pytestmark = pytest.mark.django_db
PASSWORD = "pw-test-123"  # tests.factories.UserFactory's


def rows(action):
    return list(AuditRecord.objects.filter(action=action).order_by("id"))


def test_a_sign_in_is_recorded_with_the_address(client, alice):
    response = client.post("/login/", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    (row,) = rows(AuditAction.LOGIN)
    assert (row.user, row.username, row.address, row.outcome) == (alice, "alice", "10.1.2.3", "success")


def test_a_failed_sign_in_keeps_the_name_tried_never_the_password(client, alice):
    client.post("/login/", {"username": "alice", "password": "Secret-wrong-1"}, REMOTE_ADDR="10.9.9.9")
    (row,) = rows(AuditAction.LOGIN_FAILED)
    assert (row.user, row.username, row.address, row.outcome) == (None, "alice", "10.9.9.9", "failure")
    stored = str(AuditRecord.objects.filter(pk=row.pk).values().get())
    assert "Secret-wrong-1" not in stored


def test_a_sign_out_is_recorded(client, alice):
    client.force_login(alice)
    client.post("/logout/", REMOTE_ADDR="10.1.1.1")
    (row,) = rows(AuditAction.LOGOUT)
    assert (row.user, row.address) == (alice, "10.1.1.1")


def test_permission_and_group_changes_are_recorded_from_either_side(alice):
    perm = Permission.objects.get(codename="change_virtualmachine")
    alice.user_permissions.add(perm)
    group = Group.objects.create(name="operators")
    group.permissions.add(perm)
    perm.user_set.remove(alice)
    group.user_set.add(alice)
    alice.groups.clear()
    found = [(r.object_repr, r.outcome, r.detail) for r in rows(AuditAction.PERMISSIONS)]
    label = "inventory.change_virtualmachine"
    assert found == [
        ("alice", "add", {"relation": "user_permissions", "auth.permission": [label]}),
        ("operators", "add", {"relation": "group_permissions", "auth.permission": [label]}),
        (str(perm), "remove", {"relation": "user_permissions", "auth.user": ["alice"]}),
        ("operators", "add", {"relation": "groups", "auth.user": ["alice"]}),
        ("alice", "clear", {"relation": "groups", "auth.group": ["operators"]}),
    ]


def test_superuser_and_staff_flags_are_recorded_when_they_change(alice):
    alice.first_name = "Alice"
    alice.save()
    assert rows(AuditAction.ROLE) == []
    alice.is_superuser = True
    alice.save()
    alice.is_staff = True
    alice.is_superuser = False
    alice.save()
    found = [(r.object_id, r.detail) for r in rows(AuditAction.ROLE)]
    assert found == [
        (str(alice.pk), {"is_superuser": True}),
        (str(alice.pk), {"is_superuser": False, "is_staff": True}),
    ]


def test_a_flag_saved_alone_is_recorded_and_a_sign_in_costs_no_record(alice, client):
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    client.force_login(alice)  # writes last_login only
    assert [r.detail for r in rows(AuditAction.ROLE)] == [{"is_staff": True}]


def test_the_permission_change_names_the_administrator_who_made_it(admin_user, alice, client):
    client.force_login(admin_user)
    perm = Permission.objects.get(codename="view_virtualmachine")
    response = client.post(
        f"/admin/auth/user/{alice.pk}/change/",
        {
            "username": "alice",
            "is_active": "on",
            "user_permissions": [perm.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
        REMOTE_ADDR="10.7.7.7",
    )
    assert response.status_code == 302, response.content[:2000]
    (row,) = rows(AuditAction.PERMISSIONS)
    assert (row.user, row.address, row.object_repr) == (admin_user, "10.7.7.7", "alice")


@pytest.mark.parametrize(
    ("op", "status"), [("test.audit_ok", JobStatus.SUCCESS), ("test.audit_fails", JobStatus.FAILURE)]
)
def test_every_job_is_recorded_with_its_user_and_outcome(alice, op, status):
    vm = factories.VirtualMachineFactory(name="web1")
    with transaction.atomic():
        job = job_submit(operation=op, summary=f"{op} on web1", user=alice, target=vm, lock=[vm])
    assert rows(AuditAction.JOB) == []
    run_pending_jobs()
    (row,) = rows(AuditAction.JOB)
    assert (row.user, row.outcome, row.object_type, row.object_id, row.object_repr) == (
        alice,
        status,
        "inventory.virtualmachine",
        str(vm.pk),
        "web1",
    )
    assert row.detail["job"] == job.pk and row.detail["operation"] == op


def test_a_console_session_row_gets_its_end_and_bytes_once(alice):
    vm = factories.VirtualMachineFactory(name="web1")
    record_id = services.console_session_start(user_id=alice.pk, vm=vm, kind="vnc", read_only=True, address="10.0.0.5")
    row = AuditRecord.objects.get(pk=record_id)
    assert (row.user, row.object_repr, row.detail, row.ended_at) == (
        alice,
        "web1",
        {"kind": "vnc", "read_only": True},
        None,
    )
    assert services.console_session_end(record_id=record_id, bytes_to_console=12, bytes_from_console=3456)
    assert not services.console_session_end(record_id=record_id, bytes_to_console=0, bytes_from_console=0)
    row.refresh_from_db()
    assert row.ended_at is not None and (row.bytes_to_console, row.bytes_from_console) == (12, 3456)
