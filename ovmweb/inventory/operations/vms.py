"""Job operations on virtual machines. Each talks to the hypervisor through
``driver_for(server)`` and records every state change through the services.

Statuses follow the hypervisor: RUNNING only once the driver reports the domain
running; a failed start ends STOPPED with its ports released and an event.

This module: the power actions (start, stop, restart, kill, suspend, resume), the
re-read of a VM's real state, guest messages and delete. The domain definition and
the helpers every VM operation shares are in ``vm_domain``; hot-plug in
``vm_devices``, migration in ``vm_migration``, clone and move in ``vm_copies``, export
in ``exports``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass

from django.conf import settings
from django.dispatch import receiver
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DriverError, OperationFailed
from ovmweb.hypervisor.base import Driver, PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.choices import Severity
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext, operation
from ovmweb.jobs.services import event_record
from ovmweb.jobs.signals import job_interrupted

from ..choices import DomainType, MessageResult, VmStatus
from ..models import Server, VirtualMachine
from ..services import disk_copies, install_sources, leases, placement, ports
from ..services import messages as message_services
from ..services.vm_state import vm_reconcile, vm_set_status
from ..services.vms import vm_apply_pending, vm_remove
from .vm_domain import domain_spec, load_vm, power_state, running_driver, wait_for_state

log = logging.getLogger(__name__)


# How long a guest gets to power off after an ACPI shutdown before the job fails.
STOP_TIMEOUT = float(getattr(settings, "OVMWEB_STOP_TIMEOUT", 120))


def _fail_start(vm: VirtualMachine, job: Job, error: str, *, release_ports: bool = True) -> None:
    if release_ports:
        ports.release_console_ports(vm=vm)
    vm_set_status(
        vm=vm,
        status=VmStatus.STOPPED,
        only_from={VmStatus.STARTING},
        severity=Severity.ERROR,
        event_type="vm.start_failed",
        job=job,
        reason=_("Start of %(vm)s failed: %(err)s") % {"vm": vm.name, "err": error},
    )


@dataclass
class _Start:
    """How far a start got, for undoing it if a later step fails."""

    vm: VirtualMachine
    server: Server | None = None
    driver: Driver | None = None
    # True once this start took console ports: only then are they its to release.
    placed: bool = False


@operation("vm.start")
def vm_start(ctx: JobContext, *, vm_id: int, server_id: int | None = None, ha_failover: bool = False) -> dict:
    start = _Start(vm=load_vm(vm_id))
    try:
        _start_place(ctx, start, server_id=server_id, ha_failover=ha_failover)
        _start_pvm_boot_files(ctx, start.vm, start.server)
        _start_boot(ctx, start)
    except Exception as exc:
        _start_undo(start, ctx.job, exc)
        raise
    return _start_finish(ctx, start.vm, start.server, start.driver)


def _start_place(ctx: JobContext, start: _Start, *, server_id: int | None, ha_failover: bool) -> None:
    """Apply pending changes, choose (or check) the server and take console ports there."""
    # 7.9: a stop + start is when pending runtime changes take effect. The job
    # holds the VM's lock, so the row just read is current: nothing pending, nothing to apply.
    if start.vm.pending_changes:
        start.vm = vm_apply_pending(vm=start.vm, user=ctx.user, job=ctx.job)
    vm = start.vm
    if server_id is not None:
        server = placement.check_server(vm=vm, server=Server.objects.get(pk=server_id), ha_failover=ha_failover)
    else:
        server = placement.choose_server(vm=vm, ha_failover=ha_failover)
    ports.allocate_console_ports(vm=vm, server=server)
    start.server, start.placed = server, True
    ctx.progress(
        20,
        _("Placed on %(s)s (VNC %(v)s, serial %(p)s).") % {"s": server.name, "v": vm.vnc_port, "p": vm.serial_port},
    )
    ctx.check_abort()


def _start_pvm_boot_files(ctx: JobContext, vm: VirtualMachine, server: Server) -> None:
    if vm.domain_type != DomainType.PVM:
        return
    # No BIOS: the kernel and initrd come from the mounted install tree (7.1, 7.2).
    fetched = install_sources.pvm_boot_files_fetch(vm=vm, server=server, check_abort=ctx.check_abort)
    ctx.progress(
        35,
        _("Kernel %(k)s and initrd %(i)s from %(url)s%(cached)s.")
        % {
            "k": fetched["kernel"],
            "i": fetched["initrd"],
            "url": fetched["url"],
            "cached": "" if fetched["fetched"] else _(" (already on the server)"),
        },
    )


def _start_boot(ctx: JobContext, start: _Start) -> None:
    """Define the domain on the server and start it; up to 30 s for it to report running."""
    vm, server = start.vm, start.server
    driver = start.driver = driver_for(server)
    uuid = str(vm.uuid)
    if power_state(driver, vm) in (PowerState.SHUTOFF, PowerState.CRASHED):
        driver.undefine(uuid)  # a stale definition (renamed VM, old devices) is replaced
    driver.define(domain_spec(vm, server))
    ctx.progress(50, _("Defined on %(s)s.") % {"s": server.name})
    driver.start(uuid)
    state = wait_for_state(ctx, driver, vm, {PowerState.RUNNING}, timeout=30)
    if state != PowerState.RUNNING:
        raise OperationFailed(_("the hypervisor reports the domain %(state)s") % {"state": state.value})


def _start_undo(start: _Start, job: Job, exc: Exception) -> None:
    vm = start.vm
    if start.driver is not None:
        # Nothing half made: a definition that never ran (ports taken, bad
        # media) is not left on the server holding the released ports.
        try:
            if power_state(start.driver, vm) in (PowerState.SHUTOFF, PowerState.CRASHED):
                start.driver.undefine(str(vm.uuid))
        except DriverError:
            log.warning("could not remove the definition of %s after a failed start", vm.uuid)
    # Ports this start did not take (no server could be chosen) are not its to free:
    # an OFFLINE VM keeps them while its guest may still run on the lost server.
    # A held disk lease is named (disk and path), not left as libvirt's hash.
    error = leases.lease_refusal_text(vm=vm, error=str(exc)) or str(exc)
    _fail_start(vm, job, error, release_ports=start.placed)


def _start_finish(ctx: JobContext, vm: VirtualMachine, server: Server, driver: Driver) -> dict:
    done = vm_set_status(
        vm=vm,
        status=VmStatus.RUNNING,
        only_from={VmStatus.STARTING},
        job=ctx.job,
        reason=_("%(vm)s is running on %(s)s.") % {"vm": vm.name, "s": server.name},
    )
    if done is None:
        # Killed while starting: the kill already made it STOPPED; make the hypervisor agree.
        driver.destroy(str(vm.uuid))
        ports.release_console_ports(vm=vm)
        raise Conflict(_("%(vm)s was killed while it was starting.") % {"vm": vm.name})
    return {"server_id": server.pk, "vnc_port": vm.vnc_port, "serial_port": vm.serial_port}


def vm_reread(vm: VirtualMachine, *, job: Job | None = None, reason: str = "") -> PowerState | None:
    """THE one place that replaces a promised status by the real one, re-read from the
    VM's server: a failed or aborted action job, an interrupted one, a ``vm.reread`` job.
    Returns the power state read, or None when the server could not be asked (then the
    status is left for the monitor, which marks unreachable servers' VMs)."""
    vm.refresh_from_db(fields=["status", "server"])
    if vm.status == VmStatus.TEMPLATE:
        return None
    if vm.server is None:
        state = PowerState.ABSENT
    else:
        try:
            state = power_state(driver_for(vm.server), vm)
        except DriverError as exc:
            log.warning("cannot re-read the state of %s: %s", vm.uuid, exc)
            event_record(
                obj=vm,
                type="vm.state_unknown",
                severity=Severity.WARNING,
                job=job,
                text=_("The state of %(vm)s could not be re-read from %(s)s (%(err)s).")
                % {"vm": vm.name, "s": vm.server.name, "err": exc},
            )
            return None
    text = _("%(vm)s is %(state)s on its server") % {"vm": vm.name, "state": state.value}
    vm_reconcile(vm=vm, power_state=state, job=job, reason=f"{text}: {reason}" if reason else f"{text}.")
    return state


def restores_state_on_failure(fn):
    """Wrap a VM action operation: whatever ends it early (driver error, timeout, abort),
    the VM is left in the state its server reports before the job ends."""

    @functools.wraps(fn)
    def wrapper(ctx: JobContext, *, vm_id: int, **params):
        try:
            return fn(ctx, vm_id=vm_id, **params)
        except Exception as exc:
            vm = VirtualMachine.objects.get(pk=vm_id)
            vm_reread(vm, job=ctx.job, reason=_("job #%(id)s ended early: %(err)s") % {"id": ctx.job.pk, "err": exc})
            raise

    return wrapper


@operation("vm.reread")
def vm_reread_operation(ctx: JobContext, *, vm_id: int, after_job_id: int | None = None) -> dict:
    """Submitted by ``services.vm_state.vm_reread_submit`` when a VM action job ended before its
    operation could correct the status it promised (aborted while queued)."""
    vm = load_vm(vm_id)
    state = vm_reread(
        vm, job=ctx.job, reason=_("job #%(id)s did not run") % {"id": after_job_id} if after_job_id else ""
    )
    return {"power_state": state.value if state else None, "status": vm.status}


@operation("vm.stop")
@restores_state_on_failure
def vm_stop(ctx: JobContext, *, vm_id: int, timeout: float | None = None) -> dict:
    vm = load_vm(vm_id)
    driver = running_driver(vm)
    driver.shutdown(str(vm.uuid))
    ctx.progress(30, _("Shutdown requested."))
    state = wait_for_state(ctx, driver, vm, {PowerState.SHUTOFF, PowerState.ABSENT}, timeout or STOP_TIMEOUT)
    if state not in (PowerState.SHUTOFF, PowerState.ABSENT):
        raise OperationFailed(_("the guest did not power off in time; kill it to force it off"))
    vm_set_status(
        vm=vm,
        status=VmStatus.STOPPED,
        job=ctx.job,
        vnc_port=None,
        serial_port=None,
        reason=_("%(vm)s stopped.") % {"vm": vm.name},
    )
    return {}


def _power_change(
    ctx: JobContext,
    *,
    vm_id: int,
    request: Callable[[Driver, str], None],
    reached: Collection[PowerState],
    status: str,
    reason: str,
    underway: str | None = None,
) -> dict:
    """A power action the hypervisor completes promptly: ``request(driver, uuid)`` on the
    VM's server, then up to 30 s for the server to report one of ``reached``, and only
    then the VM becomes ``status`` (``reason`` names it as ``%(vm)s``). ``underway`` is
    its status meanwhile, replacing the STOPPING the service promised."""
    vm = load_vm(vm_id)
    driver = running_driver(vm)
    request(driver, str(vm.uuid))
    if underway is not None:
        vm_set_status(vm=vm, status=underway, only_from={VmStatus.STOPPING}, job=ctx.job)
    state = wait_for_state(ctx, driver, vm, reached, timeout=30)
    if state not in reached:
        raise OperationFailed(_("the hypervisor reports the domain %(state)s") % {"state": state.value})
    vm_set_status(vm=vm, status=status, job=ctx.job, reason=reason % {"vm": vm.name})
    return {}


@operation("vm.restart")
@restores_state_on_failure
def vm_restart(ctx: JobContext, *, vm_id: int) -> dict:
    """A restart reboots the guest in the same domain: pending changes are NOT applied (7.9)."""
    return _power_change(
        ctx,
        vm_id=vm_id,
        request=lambda driver, uuid: driver.reboot(uuid),
        underway=VmStatus.STARTING,
        reached=frozenset({PowerState.RUNNING}),
        status=VmStatus.RUNNING,
        reason=_("%(vm)s restarted."),
    )


@operation("vm.kill")
def vm_kill(ctx: JobContext, *, vm_id: int) -> dict:
    """The status is already STOPPED (and HA cleared); pull the plug, best effort (7.8)."""
    vm = load_vm(vm_id)
    if vm.server is not None:
        try:
            driver_for(vm.server).destroy(str(vm.uuid))
        except DriverError as exc:
            ctx.log(_("Destroy on %(s)s failed: %(e)s") % {"s": vm.server.name, "e": exc})
    ports.release_console_ports(vm=vm)
    return {}


@operation("vm.suspend")
@restores_state_on_failure
def vm_suspend(ctx: JobContext, *, vm_id: int) -> dict:
    return _power_change(
        ctx,
        vm_id=vm_id,
        request=lambda driver, uuid: driver.suspend(uuid),
        reached=frozenset({PowerState.PAUSED, PowerState.SAVED}),
        status=VmStatus.SUSPENDED,
        reason=_("%(vm)s suspended."),
    )


@operation("vm.resume")
@restores_state_on_failure
def vm_resume(ctx: JobContext, *, vm_id: int) -> dict:
    return _power_change(
        ctx,
        vm_id=vm_id,
        request=lambda driver, uuid: driver.resume(uuid),
        reached=frozenset({PowerState.RUNNING}),
        status=VmStatus.RUNNING,
        reason=_("%(vm)s resumed."),
    )


@operation("vm.message")
def vm_message(ctx: JobContext, *, vm_id: int, message_id: int, key: str, **params) -> dict:
    vm = load_vm(vm_id)
    value = message_services.message_value(params)
    result = MessageResult.FAILED
    try:
        driver = running_driver(vm)
        # DELIVERED only on the agent's acknowledgement; the guest logs only a logged value.
        driver.send_messages(str(vm.uuid), [(key, value)], logged={key} if params.get("log") else ())
        result = MessageResult.DELIVERED
    except DriverError as exc:
        # A timed-out message may still be applied later by the guest: unknown, not failed.
        if type(exc).__name__ == "AgentTimeout":
            result = MessageResult.UNKNOWN
        raise
    finally:
        message_services.message_finish(message_id=message_id, result=result, job=ctx.job)
    return {"result": str(result)}


@operation("vm.delete")
def vm_delete(ctx: JobContext, *, vm_id: int) -> dict:
    vm = load_vm(vm_id)
    if vm.status not in VmStatus.INACTIVE:
        raise Conflict(_("%(vm)s is %(status)s; stop it first.") % {"vm": vm.name, "status": vm.status})
    if vm.server is not None:
        driver_for(vm.server).undefine(str(vm.uuid))
    disks = [slot.virtual_disk for slot in vm.disk_slots.select_related("virtual_disk") if slot.virtual_disk_id]
    vm_remove(vm=vm, job=ctx.job)
    # Its disks go too, unless another VM uses one or thin clones stand on it (kept, with the reason).
    return disk_copies.vm_disks_release(disks=disks, job=ctx.job)


@receiver(job_interrupted, dispatch_uid="inventory.vm_reread_after_interrupted_job")
def reread_vm_after_interrupted_job(sender, job: Job, **kwargs) -> None:
    """A worker died mid-job: the VM's status may be a promise (STARTING, STOPPING)
    nobody will keep. Ask its server what is real."""
    target = job.target
    if not isinstance(target, VirtualMachine):
        return
    vm_reread(target, reason=_("re-read after interrupted job #%(id)s") % {"id": job.pk})
