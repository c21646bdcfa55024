"""Records are never changed or deleted, except by the retention purge."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from ovmweb.audit import services
from ovmweb.audit.admin import AuditRecordAdmin
from ovmweb.audit.models import AuditAction, AuditImmutable, AuditRecord

pytestmark = pytest.mark.django_db


def make(days_old: float = 0) -> AuditRecord:
    row = services.record(action=AuditAction.LOGIN_FAILED, username="x", address="10.0.0.1")
    if days_old:
        # Back-date it below the ORM: the model itself refuses any update.
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {AuditRecord._meta.db_table} SET created_at = %s WHERE id = %s",
                [timezone.now() - timedelta(days=days_old), row.pk],
            )
    return row


def test_update_and_delete_are_refused_through_the_orm():
    row = make()
    row.username = "someone else"
    with pytest.raises(AuditImmutable):
        row.save()
    with pytest.raises(AuditImmutable):
        row.delete()
    with pytest.raises(AuditImmutable):
        AuditRecord.objects.filter(pk=row.pk).update(username="y")
    with pytest.raises(AuditImmutable):
        AuditRecord.objects.all().delete()
    assert AuditRecord.objects.get(pk=row.pk).username == "x"


def test_only_a_console_row_can_be_ended():
    row = make()
    assert not services.console_session_end(record_id=row.pk, bytes_to_console=1, bytes_from_console=1)
    assert AuditRecord.objects.get(pk=row.pk).ended_at is None


def test_the_admin_is_read_only_even_for_superusers(rf, admin_user):
    from django.contrib import admin

    model_admin = AuditRecordAdmin(AuditRecord, admin.site)
    request = rf.get("/admin/")
    request.user = admin_user
    row = make()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, row)
    assert not model_admin.has_delete_permission(request, row)


def test_the_purge_deletes_only_rows_past_the_retention(settings):
    settings.OVMWEB_AUDIT_RETENTION_DAYS = 30
    old, recent = make(days_old=31), make(days_old=29)
    assert services.purge_expired() == 1
    assert list(AuditRecord.objects.values_list("pk", flat=True)) == [recent.pk]
    assert AuditRecord.objects.filter(pk=old.pk).count() == 0


def test_the_purge_command(settings):
    settings.OVMWEB_AUDIT_RETENTION_DAYS = 365
    make(days_old=400)
    kept = make(days_old=10)
    call_command("purge_audit", stdout=StringIO())
    assert list(AuditRecord.objects.values_list("pk", flat=True)) == [kept.pk]
    call_command("purge_audit", "--days", "5", stdout=StringIO())
    assert AuditRecord.objects.count() == 0


def test_the_daily_purge_service_runs_at_start(settings):
    from ovmweb.audit import purge

    settings.OVMWEB_AUDIT_RETENTION_DAYS = 1
    make(days_old=2)
    assert purge.purge_once() == 1


def test_console_tickets_purge_does_not_touch_the_audit_trail():
    row = make(days_old=1)
    from ovmweb.consoles.models import ConsoleTicket

    ConsoleTicket.objects.all().delete()
    assert AuditRecord.objects.filter(pk=row.pk).exists()
