"""The state of a virtual machine: the one writer of its status, the row lock every VM
service takes, the action table's check, where it runs (placement), the payload of its
live updates, and the status brought back in line with the hypervisor (reconcile, and a
re-read after an action job that ended without keeping the status it promised).

The lowest VM service module: ``vms``, ``vm_copies``, ``vm_migration`` and
``vm_devices`` import it, it imports none of them. Importing it connects the receiver
that re-reads a VM after an unfinished action job (``apps.py`` does, at start)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import LockConflict
from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from ..choices import VM_ACTION_TABLE, VmStatus
from ..exceptions import InvalidTransition
from ..models import (
    VirtualMachine,
)

# Fields written together with the status, in the same UPDATE (kill clears HA,
# stop releases ports): vm_set_status is still the only writer of ``status``.
_STATUS_COMPANIONS = frozenset({"ha_enabled", "server", "vnc_port", "serial_port"})


def vm_payload(vm: VirtualMachine) -> dict[str, Any]:
    return {
        "id": vm.pk,
        "name": vm.name,
        "status": vm.status,
        "server_id": vm.server_id,
        "server_pool_id": vm.server_pool_id,
        "pending_changes": vm.pending_changes,
        "ha_enabled": vm.ha_enabled,
    }


def vm_set_status(
    *,
    vm: VirtualMachine,
    status: str,
    reason: str = "",
    severity: str = Severity.INFO,
    event_type: str = "vm.state",
    only_from: frozenset[str] | set[str] | None = None,
    user=None,
    job: Job | None = None,
    **companions: Any,
) -> VirtualMachine | None:
    """The only writer of ``vm.status``. Records an event and publishes a live ``vm`` update.

    With ``only_from`` the change is a conditional UPDATE: it happens only if the
    row is in one of those states at that instant, and the function returns None
    otherwise (so of two racing callers exactly one wins). A TEMPLATE never leaves
    TEMPLATE (seed 7.8)."""
    bad = set(companions) - _STATUS_COMPANIONS
    if bad:
        raise TypeError(f"vm_set_status cannot write {sorted(bad)}")
    status = VmStatus(status)
    with transaction.atomic():
        qs = VirtualMachine.objects.filter(pk=vm.pk)
        if status != VmStatus.TEMPLATE:
            qs = qs.exclude(status=VmStatus.TEMPLATE)
        if only_from is not None:
            qs = qs.filter(status__in=list(only_from))
        previous = vm.status
        if not qs.update(status=status, updated_at=timezone.now(), **companions):
            return None
        vm.status = status
        for field, value in companions.items():
            setattr(vm, field, value)
        text = reason or _("Virtual machine %(vm)s is %(status)s.") % {"vm": vm.name, "status": status}
        if previous != status or reason:
            event_record(obj=vm, type=event_type, text=text, severity=severity, user=user, job=job)
        publish("vm", vm_payload(vm))
    return vm


def lock_vm_row(vm: VirtualMachine) -> VirtualMachine:
    # On PostgreSQL this row lock serialises concurrent actions; on SQLite the
    # IMMEDIATE transaction already holds the database write lock from BEGIN.
    return (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("server_pool", "server", "repository")
        .get(pk=vm.pk)
    )


def check_action(vm: VirtualMachine, action: str) -> tuple[frozenset[str], str | None]:
    allowed, immediate = VM_ACTION_TABLE[action]
    if vm.status not in allowed:
        raise InvalidTransition(vm_name=vm.name, action=str(action), status=vm.status, allowed=sorted(allowed))
    return allowed, immediate


_KEEP = object()


def vm_set_placement(
    *,
    vm: VirtualMachine,
    server_pool: Any = _KEEP,
    server: Any = _KEEP,
    repository: Any = _KEEP,
    job: Job | None = None,
) -> VirtualMachine:
    """Record where a VM now lives after a migrate or move job (``None`` clears a field)."""
    updates = {
        k: v
        for k, v in (("server_pool", server_pool), ("server", server), ("repository", repository))
        if v is not _KEEP
    }
    with transaction.atomic():
        current = lock_vm_row(vm)
        for k, v in updates.items():
            setattr(current, k, v)
        current.full_clean()
        current.save()
        where = ", ".join(f"{k}={v if v is not None else '-'}" for k, v in updates.items())
        event_record(
            obj=current,
            type="vm.placement",
            job=job,
            text=_("%(vm)s placement changed: %(where)s.") % {"vm": current.name, "where": where},
        )
        publish("vm", vm_payload(current))
    vm.server_pool, vm.server, vm.repository = current.server_pool, current.server, current.repository
    return current


# The hypervisor's word on a domain, in the seed's states (7.8: a stopped domain
# with a suspend file is SUSPENDED; one that cannot be found is STOPPED).
POWER_TO_STATUS = {
    "running": VmStatus.RUNNING,
    "paused": VmStatus.SUSPENDED,
    "saved": VmStatus.SUSPENDED,
    "shutting_down": VmStatus.STOPPING,
    "shutoff": VmStatus.STOPPED,
    "crashed": VmStatus.STOPPED,
    "absent": VmStatus.STOPPED,
}


def vm_reconcile(*, vm: VirtualMachine, power_state: str, job: Job | None = None, reason: str = "") -> VirtualMachine:
    """Bring ``vm.status`` in line with what the hypervisor reports (monitor, recovery).
    A stopped VM gives its console ports back."""
    status = POWER_TO_STATUS[str(getattr(power_state, "value", power_state))]
    if vm.status == VmStatus.TEMPLATE or vm.status == status:
        return vm
    companions = {"vnc_port": None, "serial_port": None} if status == VmStatus.STOPPED else {}
    vm_set_status(
        vm=vm,
        status=status,
        job=job,
        severity=Severity.WARNING if status == VmStatus.STOPPED else Severity.INFO,
        reason=reason or _("%(vm)s found %(status)s on its server.") % {"vm": vm.name, "status": status},
        **companions,
    )
    return vm


# The operations whose submit put the VM in a promised status (STARTING, STOPPING).
VM_STATE_OPERATIONS = frozenset({"vm.start", "vm.stop", "vm.restart", "vm.suspend", "vm.resume"})


_PROMISED = (VmStatus.STARTING, VmStatus.STOPPING)


@receiver(post_save, sender=Job, dispatch_uid="inventory.vm_reread_after_unfinished_action")
def _vm_action_job_ended(sender, instance: Job, update_fields=None, **kwargs) -> None:
    """An action job that failed or was aborted: once that is committed, make sure the VM
    does not keep a status nobody will change. The operations correct it themselves when
    they ran (``restores_state_on_failure``); this catches the jobs aborted while queued
    or before their operation started."""
    if instance.operation not in VM_STATE_OPERATIONS or instance.status not in (JobStatus.FAILURE, JobStatus.ABORTED):
        return
    if update_fields is not None and "status" not in update_fields:
        return
    from ovmweb.jobs.recovery import INTERRUPTED

    if instance.error == INTERRUPTED:
        return  # recovery sends job_interrupted, whose receiver re-reads at once
    vm_id, job_id = (instance.params or {}).get("vm_id"), instance.pk
    if vm_id is not None:
        transaction.on_commit(lambda: vm_reread_submit(vm_id=vm_id, after_job_id=job_id))


def vm_reread_submit(*, vm_id: int, after_job_id: int | None = None, user=None) -> Job | None:
    """Queue a ``vm.reread`` job (the worker asks the VM's server for its real state) if
    the VM still shows a promised status; None when there is nothing to correct or another
    job holds the VM (that job sets the status itself)."""
    with transaction.atomic():
        vm = VirtualMachine.objects.filter(pk=vm_id, status__in=_PROMISED).first()
        if vm is None:
            return None
        try:
            with transaction.atomic():
                return job_submit(
                    operation="vm.reread",
                    user=user,
                    target=vm,
                    lock=[vm],
                    summary=_("Re-read the state of virtual machine %(vm)s") % {"vm": vm.name},
                    params={"vm_id": vm.pk, "after_job_id": after_job_id},
                )
        except LockConflict:
            return None
