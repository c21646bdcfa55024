"""The ``vm.migrate`` job (seed 7.7, 7.12): a running VM live to another server, with its
disks when they are local, or a stopped VM to another pool (cold). The guest's status
stays RUNNING throughout a live migration; a failed one is reconciled with what runs."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.errors import DriverError
from ovmweb.hypervisor.base import PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.registry import JobContext, operation
from ovmweb.jobs.services import event_record

from ..choices import RepositoryKind
from ..models import Repository, Server, ServerPool
from ..services import placement, ports
from ..services.repositories import pool_name
from ..services.vm_devices import disk_path, vm_disks_relocated
from ..services.vm_state import vm_reconcile, vm_set_placement
from .vm_domain import load_vm, power_state


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
    vm = load_vm(vm_id)
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
    if stats.get("data_total"):
        # libvirt's figures of the completed job: a short migration may end before any
        # progress reading, and the log says what was sent either way.
        ctx.progress(
            95,
            _("%(p)d MiB of %(t)d MiB sent in %(ms)s ms (downtime %(d)s ms).")
            % {
                "p": (stats.get("data_processed") or 0) >> 20,
                "t": stats["data_total"] >> 20,
                "ms": elapsed_ms,
                "d": downtime_ms,
            },
        )
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
            return power_state(driver, vm)
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
