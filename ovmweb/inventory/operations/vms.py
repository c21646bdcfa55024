"""Job operations on virtual machines. Each talks to the hypervisor through
``driver_for(server)`` and records every state change through the services.

Statuses follow the hypervisor: RUNNING only once the driver reports the domain
running; a failed start ends STOPPED with its ports released and an event.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from django.conf import settings
from django.dispatch import receiver
from django.utils.text import slugify
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DomainNotFound, DriverError, OperationFailed
from ovmweb.hypervisor.base import DiskSpec, DomainSpec, Driver, NicSpec, PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.choices import Severity
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext, operation
from ovmweb.jobs.services import event_record
from ovmweb.jobs.signals import job_interrupted

from ..choices import DiskSlotKind, DomainType, MessageResult, RepositoryKind, VmStatus
from ..models import Repository, Server, ServerPool, VirtualMachine
from ..services import install_sources, placement, ports
from ..services import messages as message_services
from ..services.repositories import pool_name
from ..services.vm_devices import disk_path, iso_path, vm_disks_relocated, vm_slot_set_disk
from ..services.vm_state import vm_reconcile, vm_set_placement, vm_set_status
from ..services.vms import vm_apply_pending, vm_remove, vm_revert_hot_change

log = logging.getLogger(__name__)

# How long a guest gets to power off after an ACPI shutdown before the job fails.
STOP_TIMEOUT = float(getattr(settings, "OVMWEB_STOP_TIMEOUT", 120))
_POLL = 0.2


def _vm(vm_id: int) -> VirtualMachine:
    return VirtualMachine.objects.select_related("server", "server_pool", "repository").get(pk=vm_id)


def domain_name(vm: VirtualMachine) -> str:
    # Unique per host and stable across renames of the VM (the uuid part).
    return f"{slugify(vm.name)[:40] or 'vm'}-{vm.uuid.hex[:8]}"


def slot_disk_spec(slot) -> DiskSpec:
    """A disk slot as the hypervisor sees it (paths follow the repository layout)."""
    if slot.kind == DiskSlotKind.DISK:
        d = slot.virtual_disk
        return DiskSpec(path=disk_path(d), device="disk", bus=slot.bus, format=d.format, shareable=d.shareable)
    if slot.kind == DiskSlotKind.CDROM:
        return DiskSpec(path=iso_path(slot.iso), device="cdrom", bus="sata", format="raw", readonly=True)
    return DiskSpec(path="", device="cdrom", bus="sata", format="raw", readonly=True)


def vnic_spec(n) -> NicSpec:
    return NicSpec(
        mac=n.mac,
        model=n.model,
        network=(n.network.libvirt_network if n.network else ""),
        bridge=(n.network.bridge if n.network and not n.network.libvirt_network else ""),
    )


def domain_spec(vm: VirtualMachine, server: Server) -> DomainSpec:
    """The libvirt definition of ``vm`` on ``server``, from the inventory.
    Paths follow the repository layout: VirtualDisks/<volume>, ISOs/<name>."""
    slots = vm.disk_slots.select_related("virtual_disk__repository", "iso__repository").order_by("slot")
    disks = [slot_disk_spec(slot) for slot in slots]
    nics = [vnic_spec(n) for n in vm.vnics.select_related("network").order_by("position", "id")]
    kernel = initrd = ""
    if vm.domain_type == DomainType.PVM:
        # Put there by install_sources.pvm_boot_files_fetch at start.
        kernel, initrd = install_sources.pvm_boot_paths(vm)
    virt_type = "kvm" if "kvm" in (server.domain_types or []) else "qemu"
    return DomainSpec(
        name=domain_name(vm),
        uuid=str(vm.uuid),
        domain_type=vm.domain_type,
        virt_type=virt_type,
        vcpus=vm.vcpus,
        max_vcpus=vm.max_vcpus,
        memory_mib=vm.memory_mib,
        max_memory_mib=vm.max_memory_mib,
        disks=disks,
        nics=nics,
        boot_order=list(vm.boot_order or ["disk"]),
        vnc_port=vm.vnc_port,
        serial_port=vm.serial_port,
        keymap=vm.keymap,
        mouse_device=vm.mouse_device,
        huge_pages=vm.huge_pages,
        cpu_pinning=vm.cpu_pinning,
        kernel=kernel,
        initrd=initrd,
        kernel_args=vm.kernel_args,
        description=vm.name,
    )


def _state(driver, vm: VirtualMachine) -> PowerState:
    try:
        return driver.domain_info(str(vm.uuid)).state
    except DomainNotFound:
        return PowerState.ABSENT


def _wait_for(
    ctx: JobContext, driver, vm: VirtualMachine, states: Collection[PowerState], timeout: float
) -> PowerState:
    deadline = time.monotonic() + timeout
    while True:
        state = _state(driver, vm)
        if state in states or time.monotonic() > deadline:
            return state
        ctx.check_abort()
        time.sleep(_POLL)


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
    start = _Start(vm=_vm(vm_id))
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
    if _state(driver, vm) in (PowerState.SHUTOFF, PowerState.CRASHED):
        driver.undefine(uuid)  # a stale definition (renamed VM, old devices) is replaced
    driver.define(domain_spec(vm, server))
    ctx.progress(50, _("Defined on %(s)s.") % {"s": server.name})
    driver.start(uuid)
    state = _wait_for(ctx, driver, vm, {PowerState.RUNNING}, timeout=30)
    if state != PowerState.RUNNING:
        raise OperationFailed(_("the hypervisor reports the domain %(state)s") % {"state": state.value})


def _start_undo(start: _Start, job: Job, exc: Exception) -> None:
    vm = start.vm
    if start.driver is not None:
        # Nothing half made: a definition that never ran (ports taken, bad
        # media) is not left on the server holding the released ports.
        try:
            if _state(start.driver, vm) in (PowerState.SHUTOFF, PowerState.CRASHED):
                start.driver.undefine(str(vm.uuid))
        except DriverError:
            log.warning("could not remove the definition of %s after a failed start", vm.uuid)
    # Ports this start did not take (no server could be chosen) are not its to free:
    # an OFFLINE VM keeps them while its guest may still run on the lost server.
    _fail_start(vm, job, str(exc), release_ports=start.placed)


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


def _running_driver(vm: VirtualMachine):
    if vm.server is None:
        raise Conflict(_("%(vm)s runs on no known server.") % {"vm": vm.name})
    return driver_for(vm.server)


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
            state = _state(driver_for(vm.server), vm)
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
    """Submitted by ``services.vms.vm_reread_submit`` when a VM action job ended before its
    operation could correct the status it promised (aborted while queued)."""
    vm = _vm(vm_id)
    state = vm_reread(
        vm, job=ctx.job, reason=_("job #%(id)s did not run") % {"id": after_job_id} if after_job_id else ""
    )
    return {"power_state": state.value if state else None, "status": vm.status}


@operation("vm.stop")
@restores_state_on_failure
def vm_stop(ctx: JobContext, *, vm_id: int, timeout: float | None = None) -> dict:
    vm = _vm(vm_id)
    driver = _running_driver(vm)
    driver.shutdown(str(vm.uuid))
    ctx.progress(30, _("Shutdown requested."))
    state = _wait_for(ctx, driver, vm, {PowerState.SHUTOFF, PowerState.ABSENT}, timeout or STOP_TIMEOUT)
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
    vm = _vm(vm_id)
    driver = _running_driver(vm)
    request(driver, str(vm.uuid))
    if underway is not None:
        vm_set_status(vm=vm, status=underway, only_from={VmStatus.STOPPING}, job=ctx.job)
    state = _wait_for(ctx, driver, vm, reached, timeout=30)
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
    vm = _vm(vm_id)
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


@operation("vm.hot_update")
def vm_hot_update(
    ctx: JobContext,
    *,
    vm_id: int,
    changes: dict | None = None,
    attach_vnic_id: int | None = None,
    detach_mac: str | None = None,
    detach_model: str | None = None,
    attach_slot_id: int | None = None,
    detach_disk: dict | None = None,
    media: dict | None = None,
) -> dict:
    """Changes of a running VM that the services found hot-pluggable (7.13, 7.14): vCPUs and
    memory, and devices (VNICs, disks, CD-ROM media), live and in the persistent definition.

    The inventory already holds the change; if the hypervisor refuses the hot-plug, the
    job fails saying so and the change takes effect at the next start (it is in the
    definition written then)."""
    vm = _vm(vm_id)
    hot = _HotUpdate(ctx, vm, _running_driver(vm))
    hot.runtime(changes or {})
    if attach_vnic_id is not None:
        hot.attach_vnic(attach_vnic_id)
    if detach_mac is not None:
        hot.detach_vnic(detach_mac, detach_model)
    if attach_slot_id is not None:
        hot.attach_slot(attach_slot_id)
    if detach_disk is not None:
        hot.detach_disk(detach_disk)
    if media is not None:
        hot.change_media(media)
    return {"applied": hot.applied}


class _HotUpdate:
    """The steps of one ``vm.hot_update`` job on a running VM; ``applied`` records each one done."""

    def __init__(self, ctx: JobContext, vm: VirtualMachine, driver: Driver):
        self.ctx, self.vm, self.driver = ctx, vm, driver
        self.uuid = str(vm.uuid)
        self.applied: dict = {}

    def runtime(self, changes: dict) -> None:
        """vCPUs and memory. One the hypervisor refuses is reverted to what runs and left pending."""
        driver, vm = self.driver, self.vm
        info = driver.domain_info(self.uuid)
        for field, value in changes.items():
            setter = {"vcpus": driver.set_vcpus, "memory_mib": driver.set_memory}[field]
            try:
                setter(self.uuid, int(value))
                self.applied[field] = value
            except DriverError as exc:
                running = info.vcpus if field == "vcpus" else info.memory_mib
                vm_revert_hot_change(
                    vm=vm, field=field, running_value=running, wanted=value, job=self.ctx.job, error=str(exc)
                )

    def _device(self, what: str, action) -> None:
        try:
            self.applied[what] = action()
        except DriverError as exc:
            raise OperationFailed(
                _("%(what)s of running %(vm)s failed (%(err)s); the change takes effect at its next start.")
                % {"what": what, "vm": self.vm.name, "err": exc}
            ) from exc

    def attach_vnic(self, vnic_id: int) -> None:
        from ..models import Vnic

        vnic = Vnic.objects.select_related("network").filter(pk=vnic_id, vm=self.vm).first()
        if vnic is not None:
            self._device(
                _("Hot-add of VNIC %(mac)s") % {"mac": vnic.mac},
                lambda: self.driver.attach_device(self.uuid, vnic_spec(vnic), domain_type=self.vm.domain_type),
            )

    def detach_vnic(self, mac: str, model: str | None) -> None:
        self._device(
            _("Hot-remove of VNIC %(mac)s") % {"mac": mac},
            lambda: self.driver.detach_device(self.uuid, NicSpec(mac=mac, model=model or "virtio")) or mac,
        )

    def attach_slot(self, slot_id: int) -> None:
        from ..models import VmDiskSlot

        slot = (
            VmDiskSlot.objects.select_related("virtual_disk__repository", "iso__repository")
            .filter(pk=slot_id, vm=self.vm)
            .first()
        )
        if slot is not None:
            self._device(
                _("Hot-add of disk slot %(n)d") % {"n": slot.slot},
                lambda: self.driver.attach_device(self.uuid, slot_disk_spec(slot), domain_type=self.vm.domain_type),
            )

    def detach_disk(self, disk: dict) -> None:
        self._device(
            _("Hot-remove of %(path)s") % {"path": disk["path"]},
            lambda: (
                self.driver.detach_device(self.uuid, DiskSpec(path=disk["path"], device=disk.get("device", "disk")))
                or disk["path"]
            ),
        )

    def change_media(self, media: dict) -> None:
        self._device(
            _("CD-ROM change to %(path)s") % {"path": media["new"] or _("empty")},
            lambda: (
                self.driver.change_media(self.uuid, current_path=media["current"], new_path=media["new"])
                or media["new"]
            ),
        )


@operation("vm.message")
def vm_message(ctx: JobContext, *, vm_id: int, message_id: int, key: str, **params) -> dict:
    vm = _vm(vm_id)
    value = message_services.message_value(params)
    result = MessageResult.FAILED
    try:
        driver = _running_driver(vm)
        driver.send_messages(str(vm.uuid), [(key, value)])
        result = MessageResult.DELIVERED
    except DriverError as exc:
        # A timed-out message may still be applied later by the guest: unknown, not failed.
        if type(exc).__name__ == "AgentTimeout":
            result = MessageResult.UNKNOWN
        raise
    finally:
        message_services.message_finish(message_id=message_id, result=result, job=ctx.job)
    return {"result": str(result)}


@operation("vm.migrate")
def vm_migrate(
    ctx: JobContext,
    *,
    vm_id: int,
    target_server_id: int | None = None,
    target_pool_id: int | None = None,
    storage_migration: bool = False,
    target_repository_id: int | None = None,
) -> dict:
    vm = _vm(vm_id)
    if target_server_id is None:
        # Cold migration: the VM is placed in the target pool when it next starts (7.7).
        pool = ServerPool.objects.get(pk=target_pool_id) if target_pool_id else None
        if vm.server is not None:
            try:
                driver_for(vm.server).undefine(str(vm.uuid))
            except DriverError as exc:
                ctx.log(_("Undefine on %(s)s failed: %(e)s") % {"s": vm.server.name, "e": exc})
        vm_set_placement(vm=vm, server_pool=pool, server=None, job=ctx.job)
        return {"server_pool_id": target_pool_id}
    target = Server.objects.get(pk=target_server_id)
    source = vm.server
    target_repo = Repository.objects.get(pk=target_repository_id) if storage_migration else None
    # Checked again now: the target may have been locked or filled since the job was queued.
    placement.check_server(vm=vm, server=target, **({"repository": target_repo} if target_repo else {}))
    src_driver, dst_driver = driver_for(source), driver_for(target)
    # The source's console ports may be taken on the target: the domain arrives there with
    # the target's next free ones, written into its destination definition.
    there = ports.free_console_ports(server=target)
    ctx.progress(
        5, _("Migrating to %(s)s (VNC %(v)s, serial %(p)s there).") % {"s": target.name, "v": there[0], "p": there[1]}
    )

    def progress(percent: int, message: str) -> None:
        ctx.progress(10 + percent * 85 // 100, message)
        ctx.check_abort()  # an abort cancels the libvirt job: the guest stays on the source

    options = {"vnc_port": there[0], "serial_port": there[1], "progress": progress}
    try:
        if storage_migration:
            return _migrate_with_storage(ctx, vm, source, target, target_repo, src_driver, dst_driver, options)
        # A shared directory is not recognised by libvirt as shared storage: unsafe is correct here.
        stats = src_driver.migrate(str(vm.uuid), dst_driver, live=True, unsafe=True, **options)
    except Exception as exc:
        _migration_failed(ctx, vm, source, target, src_driver, dst_driver, there, exc)
        raise
    return _arrived(ctx, vm, source, target, there, stats)


def _arrived(ctx, vm, source, target, there: tuple[int, int], stats: dict, **placement_changes) -> dict:
    """The guest runs on ``target`` now: record it there, with the console ports it has there.
    Its status stays RUNNING throughout: a live migration never stops it."""
    vnc_port, serial_port = ports.move_console_ports(vm=vm, server=target, vnc_port=there[0], serial_port=there[1])
    vm_set_placement(vm=vm, server=target, job=ctx.job, **placement_changes)
    elapsed_ms, downtime_ms = stats.get("time_elapsed"), stats.get("downtime")
    event_record(
        obj=vm,
        type="vm.migrated",
        job=ctx.job,
        user=ctx.user,
        text=_("%(vm)s migrated live from %(src)s to %(dst)s in %(t)s ms (downtime %(d)s ms).")
        % {"vm": vm.name, "src": source.name, "dst": target.name, "t": elapsed_ms, "d": downtime_ms},
    )
    return {
        "server_id": target.pk,
        "vnc_port": vnc_port,
        "serial_port": serial_port,
        "time_elapsed_ms": elapsed_ms,
        "downtime_ms": downtime_ms,
        "data_bytes": stats.get("data_processed"),
    }


def _migration_failed(ctx, vm, source, target, src_driver, dst_driver, there, error: Exception) -> None:
    """libvirt rolls a failed or aborted migration back and the guest runs on at the source;
    record whatever is real (it may also have arrived, if only the confirmation failed)."""

    def state(driver) -> PowerState:
        try:
            return _state(driver, vm)
        except DriverError:
            return PowerState.ABSENT

    here, over_there = state(src_driver), state(dst_driver)
    if here == PowerState.ABSENT and over_there == PowerState.RUNNING:
        _arrived(ctx, vm, source, target, there, {})
        return
    vm.refresh_from_db(fields=["status"])
    vm_reconcile(
        vm=vm,
        power_state=here,
        job=ctx.job,
        reason=_("Migration of %(vm)s to %(s)s failed: %(err)s") % {"vm": vm.name, "s": target.name, "err": error},
    )


def _migrate_with_storage(ctx, vm, source, target, target_repo, src_driver, dst_driver, options: dict) -> dict:
    """7.7: a VM on local storage migrates only while running, its disks copied along.
    The target volumes are created first (same names, sizes and formats), libvirt copies
    the data during the live migration, then the source volumes are deleted."""
    local = [
        s.virtual_disk
        for s in vm.disk_slots.select_related("virtual_disk__repository")
        if s.virtual_disk is not None and s.virtual_disk.repository.kind == RepositoryKind.LOCAL
    ]
    target_pool = pool_name(target_repo, "disks")
    created = []
    try:
        for disk in local:
            dst_driver.volume_create(target_pool, disk.volume, disk.size_bytes, format=disk.format, sparse=True)
            created.append(disk.volume)
        ctx.progress(8, _("%(n)d volume(s) created on %(s)s.") % {"n": len(created), "s": target.name})
        disk_map = {disk_path(d): f"{target_repo.path}/VirtualDisks/{d.volume}" for d in local}
        stats = src_driver.migrate_with_storage(str(vm.uuid), dst_driver, disk_map=disk_map, **options)
    except Exception:
        for volume in created:
            try:
                dst_driver.volume_delete(target_pool, volume)
            except DriverError:
                pass
        raise
    old = {d.pk: d.repository for d in local}
    result = _arrived(
        ctx,
        vm,
        source,
        target,
        (options["vnc_port"], options["serial_port"]),
        stats,
        repository=target_repo if vm.repository and vm.repository.kind == RepositoryKind.LOCAL else vm.repository,
    )
    vm_disks_relocated(vm=vm, disk_ids=list(old), repository=target_repo, job=ctx.job)
    for disk in local:
        try:
            src_driver.volume_delete(pool_name(old[disk.pk], "disks"), disk.volume)
        except DriverError as exc:
            ctx.log(_("Source volume %(v)s not deleted: %(e)s") % {"v": disk.volume, "e": exc})
    return {**result, "repository_id": target_repo.pk, "disks_copied": len(local)}


@operation("vm.clone")
def vm_clone(ctx: JobContext, *, vm_id: int, source_vm_id: int, disks: list[dict]) -> dict:
    """Copy each disk of the source (thin / sparse / non-sparse) into the clone's slots.
    The rules (hot clone only thin) were checked when the job was submitted."""
    from ..models import Repository, VirtualDisk
    from ..services import storage

    clone = _vm(vm_id)
    for index, item in enumerate(disks):
        ctx.check_abort()
        source_disk = VirtualDisk.objects.select_related("repository").get(pk=item["disk_id"])
        target = Repository.objects.get(pk=item["target_repository_id"])
        new = storage.disk_clone(
            disk=source_disk,
            target_repository=target,
            clone_type=item["clone_type"],
            name=f"{clone.name}-{item['slot']}",
            job=ctx.job,
        )
        vm_slot_set_disk(vm=clone, slot=item["slot"], disk=new, bus=item["bus"], job=ctx.job)
        ctx.progress(int(100 * (index + 1) / max(len(disks), 1)), _("Disk %(n)d cloned.") % {"n": index + 1})
    return {"vm_id": clone.pk, "disks": len(disks)}


@operation("vm.move")
def vm_move(ctx: JobContext, *, vm_id: int, disks: list[dict], repository_id: int | None = None) -> dict:
    """Copy each listed disk to its target repository, switch the slot to the copy, then
    delete the original — except shareable disks, which are copied, not moved (7.7)."""
    from ..models import Repository, VmDiskSlot
    from ..services import storage

    vm = _vm(vm_id)
    moved = []
    for index, item in enumerate(disks):
        ctx.check_abort()
        slot = VmDiskSlot.objects.select_related("virtual_disk__repository").get(pk=item["slot_id"])
        old = slot.virtual_disk
        target = Repository.objects.get(pk=item["target_repository_id"])
        if old is None or old.repository_id == target.pk:
            continue
        new = storage.disk_clone(
            disk=old, target_repository=target, clone_type=item["clone_type"], name=old.name, job=ctx.job
        )
        vm_slot_set_disk(vm=vm, slot=slot.slot, disk=new, bus=slot.bus, job=ctx.job)
        if not old.shareable:
            # A child job, so the original goes only once the move has succeeded.
            ctx.submit_child(
                operation="disk.delete",
                summary=_("Delete virtual disk %(name)s") % {"name": old.name},
                target=old,
                params={"disk_id": old.pk},
                lock=[old],
            )
        moved.append(new.pk)
        ctx.progress(int(90 * (index + 1) / max(len(disks), 1)))
    # The configuration goes to the named repository, else to where the first disk went.
    target_id = repository_id or (disks[0]["target_repository_id"] if disks else None)
    if target_id is not None:
        vm_set_placement(vm=vm, repository=Repository.objects.get(pk=target_id), job=ctx.job)
    return {"moved_disk_ids": moved}


# vm.export (an OVA of a stopped VM) lives in operations/exports.py.


@operation("vm.delete")
def vm_delete(ctx: JobContext, *, vm_id: int) -> dict:
    vm = _vm(vm_id)
    if vm.status not in VmStatus.INACTIVE:
        raise Conflict(_("%(vm)s is %(status)s; stop it first.") % {"vm": vm.name, "status": vm.status})
    if vm.server is not None:
        driver_for(vm.server).undefine(str(vm.uuid))
    vm_remove(vm=vm, job=ctx.job)
    return {}


@receiver(job_interrupted, dispatch_uid="inventory.vm_reread_after_interrupted_job")
def reread_vm_after_interrupted_job(sender, job: Job, **kwargs) -> None:
    """A worker died mid-job: the VM's status may be a promise (STARTING, STOPPING)
    nobody will keep. Ask its server what is real."""
    target = job.target
    if not isinstance(target, VirtualMachine):
        return
    vm_reread(target, reason=_("re-read after interrupted job #%(id)s") % {"id": job.pk})
