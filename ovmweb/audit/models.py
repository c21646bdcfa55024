"""The audit trail: one row per sign-in, sign-out, failed sign-in, role or permission
change, finished job and console session.

Invariant: a row, once written, never changes and is never deleted through the ORM
(``save`` of an existing row, ``delete``, ``QuerySet.update`` and ``QuerySet.delete``
all raise ``AuditImmutable``), with two exceptions that live in ``services.py`` only:
a console session's row receives its end and byte counts once (``ended_at`` from null),
and the retention purge deletes rows older than ``OVMWEB_AUDIT_RETENTION_DAYS``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class AuditImmutable(Exception):
    """An attempt to change or delete an audit record outside the two allowed paths."""


class AuditAction(models.TextChoices):
    LOGIN = "login", _("Signed in")
    LOGOUT = "logout", _("Signed out")
    LOGIN_FAILED = "login_failed", _("Failed sign-in")
    PERMISSIONS = "permissions", _("Permissions changed")
    ROLE = "role", _("Role changed")
    JOB = "job", _("Job finished")
    CONSOLE = "console", _("Console session")


class AuditQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AuditImmutable("audit records are never updated")

    def delete(self):
        raise AuditImmutable("audit records are deleted only by the retention purge")

    # The two exceptions; called only from ovmweb.audit.services.
    def _end_console(self, **fields) -> int:
        return models.QuerySet.update(self.filter(action=AuditAction.CONSOLE, ended_at__isnull=True), **fields)

    def _purge(self) -> int:
        deleted, _per_model = models.QuerySet.delete(self)
        return deleted


class AuditRecord(models.Model):
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    action = models.CharField(max_length=16, choices=AuditAction.choices, db_index=True)
    # Who acted (null when unknown or since deleted); ``username`` keeps the name, and for a
    # failed sign-in the name that was tried. A password is never stored.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    username = models.CharField(max_length=150, blank=True, db_index=True)
    address = models.CharField(max_length=64, blank=True)
    # What the action was about: "app_label.model", its id and its name at the time.
    object_type = models.CharField(max_length=100, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=255, blank=True)
    outcome = models.CharField(max_length=32, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # Console sessions: when it ended and the bytes each way.
    ended_at = models.DateTimeField(null=True, blank=True)
    bytes_to_console = models.PositiveBigIntegerField(default=0)
    bytes_from_console = models.PositiveBigIntegerField(default=0)

    objects = AuditQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["object_type", "object_id"])]
        # Only "view": nobody is given a way to add, change or delete a record.
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.action} {self.username}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AuditImmutable("audit records are never updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AuditImmutable("audit records are deleted only by the retention purge")
