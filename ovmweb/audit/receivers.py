"""Signal receivers that append to the audit trail: sign-ins, sign-outs, failed sign-ins
(django.contrib.auth), role and permission changes (m2m_changed, the User's flags) and
jobs reaching a final status (the Job row, as ovmweb/inventory/job_endings.py does: a
job may end without its operation ever running)."""

from __future__ import annotations

from django.contrib.auth import get_user_model, user_logged_in, user_logged_out, user_login_failed
from django.contrib.auth.models import Group
from django.core.exceptions import ObjectDoesNotExist
from django.db.models.signals import m2m_changed, post_delete, post_save, pre_save

from ovmweb.accounts.models import RoleAssignment
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job

from . import services
from .models import AuditAction

ROLE_FLAGS = ("is_superuser", "is_staff")


def logged_in(sender, request, user, **kwargs) -> None:
    services.record(action=AuditAction.LOGIN, user=user, obj=user, request=request, outcome="success")


def logged_out(sender, request, user, **kwargs) -> None:
    if user is not None:
        services.record(action=AuditAction.LOGOUT, user=user, obj=user, request=request)


def login_failed(sender, credentials, request=None, **kwargs) -> None:
    # ``credentials`` is already cleansed by Django; only the name is kept, never the password.
    credentials = credentials or {}
    username = str(credentials.get(get_user_model().USERNAME_FIELD) or credentials.get("username") or "")
    services.record(action=AuditAction.LOGIN_FAILED, username=username, request=request, outcome="failure")


def _names(model, pks) -> list[str]:
    rows = model.objects.filter(pk__in=pks)
    if model._meta.label_lower == "auth.permission":
        return sorted(f"{p.content_type.app_label}.{p.codename}" for p in rows.select_related("content_type"))
    return sorted(str(row) for row in rows)


def m2m_role_changed(sender, instance, action, reverse, model, pk_set, **kwargs) -> None:
    """User.user_permissions, User.groups, Group.permissions, from either side."""
    if action == "pre_clear":
        # What is about to go: read it now, record it at post_clear.
        field = _m2m_field(sender, instance)
        instance._audit_cleared = list(getattr(instance, field).values_list("pk", flat=True)) if field else []
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if action == "post_clear":
        pk_set = getattr(instance, "_audit_cleared", [])
    if not pk_set:
        return
    services.record(
        action=AuditAction.PERMISSIONS,
        obj=instance,
        outcome=action.removeprefix("post_"),
        detail={"relation": _relation(sender), model._meta.label_lower: _names(model, pk_set)},
    )


def _relation(through) -> str:
    user = get_user_model()
    return {
        user.user_permissions.through: "user_permissions",
        user.groups.through: "groups",
        Group.permissions.through: "group_permissions",
    }[through]


def _m2m_field(through, instance) -> str | None:
    """The accessor on ``instance`` that the ``through`` relation fills (either side)."""
    for field in instance._meta.get_fields():
        if not getattr(field, "many_to_many", False):
            continue
        if field.concrete and field.remote_field.through is through:
            return field.name
        if not field.concrete and field.through is through:
            return field.get_accessor_name()
    return None


def user_flags_before(sender, instance, raw=False, update_fields=None, **kwargs) -> None:
    # A save that cannot touch the flags (a sign-in writes last_login only) costs no query.
    if raw or instance.pk is None or (update_fields is not None and not set(update_fields) & set(ROLE_FLAGS)):
        instance._audit_flags = {}
        return
    old = sender.objects.filter(pk=instance.pk).values(*ROLE_FLAGS).first() or {}
    instance._audit_flags = old


def user_flags_after(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:
        return
    old = getattr(instance, "_audit_flags", {})
    changed = {
        flag: getattr(instance, flag)
        for flag in ROLE_FLAGS
        if (created and getattr(instance, flag))
        or (not created and flag in old and old[flag] != getattr(instance, flag))
    }
    if changed:
        services.record(
            action=AuditAction.ROLE, obj=instance, outcome="created" if created else "changed", detail=changed
        )


def role_assignment_saved(sender, instance, created, raw=False, **kwargs) -> None:
    """A role granted on a pool or the estate (ovmweb.inventory.services.roles, or the admin)."""
    if not raw and created:
        _record_role(instance, "granted")


def role_assignment_deleted(sender, instance, **kwargs) -> None:
    _record_role(instance, "removed")


def _record_role(assignment, outcome: str) -> None:
    try:
        grantee = assignment.grantee
    except ObjectDoesNotExist:  # removed with its user or group: the ids below still say whose
        grantee = None
    services.record(
        action=AuditAction.ROLE,
        obj=grantee,
        outcome=outcome,
        detail={
            "role": assignment.role,
            "server_pool": assignment.server_pool_id,
            "user": assignment.user_id,
            "group": assignment.group_id,
        },
    )


def job_saved(sender, instance, update_fields=None, raw=False, **kwargs) -> None:
    if raw or instance.status not in JobStatus.DONE:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    target = instance.target_type.model_class() if instance.target_type_id else None
    services.record(
        action=AuditAction.JOB,
        user=instance.user,
        from_request=False,
        object_type=target._meta.label_lower if target is not None else "",
        object_id=str(instance.target_id or ""),
        object_repr=instance.target_name[:255],
        outcome=instance.status,
        detail={"job": instance.pk, "operation": instance.operation, "summary": instance.summary},
    )


def connect() -> None:
    user = get_user_model()
    user_logged_in.connect(logged_in, dispatch_uid="ovmweb-audit-login")
    user_logged_out.connect(logged_out, dispatch_uid="ovmweb-audit-logout")
    user_login_failed.connect(login_failed, dispatch_uid="ovmweb-audit-login-failed")
    for through in (user.user_permissions.through, user.groups.through, Group.permissions.through):
        m2m_changed.connect(m2m_role_changed, sender=through, dispatch_uid=f"ovmweb-audit-m2m-{through.__name__}")
    pre_save.connect(user_flags_before, sender=user, dispatch_uid="ovmweb-audit-user-before")
    post_save.connect(user_flags_after, sender=user, dispatch_uid="ovmweb-audit-user-after")
    post_save.connect(job_saved, sender=Job, dispatch_uid="ovmweb-audit-job-ended")
    post_save.connect(role_assignment_saved, sender=RoleAssignment, dispatch_uid="ovmweb-audit-role-granted")
    post_delete.connect(role_assignment_deleted, sender=RoleAssignment, dispatch_uid="ovmweb-audit-role-removed")
