"""Every write of the audit trail (see models.py for the append-only invariant)."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from .context import actor_and_address
from .models import AuditAction, AuditRecord


def _label(obj) -> tuple[str, str, str]:
    if obj is None:
        return "", "", ""
    return obj._meta.label_lower, str(obj.pk), str(obj)[:255]


def record(
    *,
    action: str,
    user=None,
    username: str | None = None,
    address: str | None = None,
    obj=None,
    outcome: str = "",
    detail: dict | None = None,
    request=None,
    from_request: bool = True,
    **fields,
) -> AuditRecord:
    """Append one record. The actor and address default to those of the request being
    served (the audit middleware) unless ``from_request`` is False, the object to ``obj``'s
    label, id and name."""
    actor, request_address = actor_and_address(request) if from_request else (None, "")
    user = user if user is not None else actor
    object_type, object_id, object_repr = _label(obj)
    fields = {"object_type": object_type, "object_id": object_id, "object_repr": object_repr, **fields}
    row = AuditRecord(
        action=action,
        user=user if user is not None and user.pk is not None else None,
        username=(username if username is not None else (user.get_username() if user is not None else ""))[:150],
        address=(address if address is not None else request_address)[:64],
        outcome=outcome[:32],
        detail=detail or {},
        **fields,
    )
    row.full_clean(exclude=["user"])
    row.save()
    return row


def console_session_start(*, user_id: int, vm, kind: str, read_only: bool, address: str = "") -> int:
    """The row of a console session that just opened; returns its id for ``console_session_end``."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=user_id).first()
    row = record(
        action=AuditAction.CONSOLE,
        user=user,
        address=address,
        obj=vm,
        outcome="read-only" if read_only else "interactive",
        detail={"kind": kind, "read_only": read_only},
    )
    return row.pk


def console_session_end(*, record_id: int, bytes_to_console: int, bytes_from_console: int) -> bool:
    """Write the end and byte counts of a console session, once (a second call changes nothing)."""
    return (
        AuditRecord.objects.filter(pk=record_id)._end_console(
            ended_at=timezone.now(), bytes_to_console=bytes_to_console, bytes_from_console=bytes_from_console
        )
        == 1
    )


def purge_expired(*, now=None, days: int | None = None) -> int:
    """Delete the records older than the retention period; returns how many."""
    days = settings.OVMWEB_AUDIT_RETENTION_DAYS if days is None else days
    cutoff = (now or timezone.now()) - timedelta(days=days)
    return AuditRecord.objects.filter(created_at__lt=cutoff)._purge()
