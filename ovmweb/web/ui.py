"""Small helpers shared by the UI views: what the page may offer, and how domain
errors become messages. The rules themselves live in the services; the UI only
reflects them (the server still enforces every action)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ovmweb.errors import Conflict
from ovmweb.inventory import rules
from ovmweb.inventory.choices import VM_ACTION_TABLE, VmAction, VmStatus

# Actions that cannot be undone or that cut a running guest off: the toolbar asks first.
DESTRUCTIVE_ACTIONS = frozenset({VmAction.STOP, VmAction.KILL, VmAction.RESTART, VmAction.SUSPEND, "delete"})

TOOLBAR_ACTIONS = [
    VmAction.START,
    VmAction.STOP,
    VmAction.RESTART,
    VmAction.KILL,
    VmAction.SUSPEND,
    VmAction.RESUME,
]


def allowed_actions(status: str) -> set[str]:
    """The state actions VM_ACTION_TABLE permits from ``status`` (seed 7.8)."""
    return {str(action) for action, (sources, _target) in VM_ACTION_TABLE.items() if status in sources}


def vm_toolbar(vm) -> list[dict[str, Any]]:
    """Buttons of the VM toolbar with their enabled state for this VM."""
    allowed = allowed_actions(vm.status) if vm is not None else set()
    buttons = []
    for action in TOOLBAR_ACTIONS:
        buttons.append(
            {
                "action": str(action),
                "label": action.label,
                "enabled": str(action) in allowed,
                "confirm": action in DESTRUCTIVE_ACTIONS,
            }
        )
    return buttons


# Operations with a form of their own: (key, label, the states rules.py lets them start from).
FORM_ACTIONS = [
    ("migrate", _("Migrate…"), VM_ACTION_TABLE[VmAction.MIGRATE][0] | rules.COLD_MIGRATION_STATES),
    ("clone", _("Clone…"), rules.CLONE_STATES),
    ("template", _("Save as Template…"), rules.CLONE_STATES - {VmStatus.TEMPLATE}),
    ("backup", _("Back Up…"), rules.CLONE_STATES),
    ("move", _("Move…"), rules.MOVE_STATES),
    ("export", _("Export…"), rules.EXPORT_STATES),
    ("messages", _("Send Messages…"), rules.MESSAGE_STATES),
]


def vm_form_actions(vm) -> list[dict[str, Any]]:
    """The toolbar's links to the forms of migrate, clone, back up, move, export and
    messages, enabled in the states the rules allow (the services still check)."""
    from django.urls import reverse

    out = []
    for key, label, states in FORM_ACTIONS:
        url = ""
        if vm is not None:
            url = (
                reverse("web:vm_clone", args=[vm.pk]) + "?as_template=1"
                if key == "template"
                else reverse(f"web:vm_{key}", args=[vm.pk])
            )
        out.append({"key": key, "label": label, "url": url, "enabled": vm is not None and vm.status in states})
    return out


def vm_can_console(vm) -> bool:
    # Console ports exist only while the domain exists on a server.
    return vm is not None and vm.status in VmStatus.ACTIVE and vm.server_id is not None


def vm_can_delete(vm) -> bool:
    return vm is not None and vm.status in VmStatus.INACTIVE


def error_messages(exc: Exception) -> list[str]:
    if isinstance(exc, ValidationError):
        return [str(m) for m in exc.messages]
    return [str(exc)]


def call_service(
    request: HttpRequest,
    fn: Callable[[], Any],
    *,
    form: forms.Form | None = None,
    field_map: dict[str, str] | None = None,
    success: str = "",
) -> tuple[bool, Any]:
    """Run a service call; domain errors become field errors on ``form`` (when
    the field exists) or messages, never a 500. Returns (ok, result)."""
    try:
        result = fn()
    except ValidationError as exc:
        _attach_validation_error(request, exc, form, field_map or {})
        return False, None
    except (Conflict, PermissionDenied) as exc:
        if form is not None:
            form.add_error(None, str(exc) or _("Permission denied."))
        else:
            messages.error(request, str(exc) or _("Permission denied."))
        return False, None
    if success:
        messages.success(request, success)
    return True, result


def _attach_validation_error(request, exc: ValidationError, form, field_map) -> None:
    if form is None:
        for msg in error_messages(exc):
            messages.error(request, msg)
        return
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.error_dict.items():
        target = field_map.get(field, field)
        if target in form.fields:
            for err in errors:
                form.add_error(target, err)
        else:
            for err in errors:
                msgs = err.messages if hasattr(err, "messages") else [str(err)]
                label = "" if field == "__all__" else f"{field}: "
                for m in msgs:
                    form.add_error(None, f"{label}{m}")


def human_bytes(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)
