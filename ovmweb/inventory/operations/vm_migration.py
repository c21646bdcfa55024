"""The ``vm.migrate`` job (seed 7.7, 7.12): a running VM live to another server, with its
disks when they are local, or a stopped VM to another pool (cold). The guest's status
stays RUNNING throughout a live migration.

Invariants of a live migration with storage:

- Space is checked first (the target repository holds the disks, the source keeps as much
  free again, seed 7.7), then each target volume is journaled before it is created
  (``storage_journal``).
- Whatever libvirt answers, a failure is settled by asking libvirt where the domain is:
  running on the target (only the confirmation failed) is an arrival and is recorded as
  one; on the source, the target's volumes and any definition left there go; anywhere
  else (a server unreachable) nothing is deleted and the journal keeps the target volumes
  for a later try (``resolve_journal``, also run when a worker recovers the job).
- Source volumes are deleted only once the guest runs on the target, and never one a thin
  clone stands on; a base under a copied disk goes only when nothing stands on it any more.
"""

from __future__ import annotations

import logging

from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils.translation import gettext as _

from ovmweb.errors import DriverError
from ovmweb.hypervisor.base import PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext, operation
from ovmweb.jobs.services import event_record
from ovmweb.jobs.signals import job_interrupted

from ..choices import RepositoryKind
from ..models import Repository, Server, ServerPool, VirtualDisk, VirtualMachine
from ..services import bulk, placement, ports, storage_journal
from ..services.disk_copies import bases_release
from ..services.repositories import pool_name
from ..services.vm_devices import disk_path, vm_disks_relocated
from ..services.vm_migration import check_storage_space, cold_migration_done, storage_disks
from ..services.vm_state import vm_reconcile, vm_set_placement
from .vm_domain import load_vm, power_state

log = logging.getLogger(__name__)

SOURCE, TARGET, UNKNOWN = "source", "target", "unknown"


@operation("vm.migrate")
def vm_migrate(
    ctx: JobContext,
    *,
    vm_id: int,
    target_server_id: int | None = None,
    target_pool_id: int | None = None,
    storage_migration: bool = False,
    target_repository_id: int | None = None,
    after_job_id: int | None = None,
) -> dict:
    bulk.wait_for_turn(ctx, after_job_id)  # one migration after another (7.7)
    vm = load_vm(vm_id)
    if target_server_id is None:
        pool = ServerPool.objects.get(pk=target_pool_id) if target_pool_id else None
        return cold_migration_done(vm=vm, target_pool=pool, job=ctx.job, log=ctx.log)
    storage_journal.journal_sweep_all()  # leftovers of earlier faults first
    target = Server.objects.get(pk=target_server_id)
    source = vm.server
    target_repo = Repository.objects.get(pk=target_repository_id) if storage_migration else None
    # Checked again now: the target may have been locked or filled since the job was queued.
    placement.check_server(vm=vm, server=target, **({"repository": target_repo} if target_repo else {}))
    src_driver, dst_driver = driver_for(source), driver_for(target)
    disks = storage_disks(vm) if storage_migration else []
    if storage_migration:
        check_storage_space(vm=vm, disks=disks, target_repository=target_repo)
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
            stats = _copy_with_storage(ctx, vm, target, target_repo, disks, src_driver, dst_driver, options)
        else:
            # A shared directory is not recognised by libvirt as shared storage: unsafe is correct here.
            stats = src_driver.migrate(str(vm.uuid), dst_driver, live=True, unsafe=True, **options)
    except Exception as exc:
        where = locate(vm, src_driver, dst_driver)
        if where != TARGET:
            _migration_failed(ctx, vm, target, where, src_driver, dst_driver, exc)
            raise
        # libvirt reported an error, but the guest runs on the target: it arrived.
        ctx.log(
            _("libvirt reported %(e)s, but %(vm)s runs on %(s)s: it arrived.")
            % {"e": exc, "vm": vm.name, "s": target.name}
        )
        stats = {}
    result = _arrived(ctx, vm, source, target, there, stats)
    if storage_migration:
        result.update(storage_arrived(job=ctx.job, vm=vm, target_repo=target_repo, src_driver=src_driver, log=ctx.log))
    return result


def _state(driver, vm: VirtualMachine) -> PowerState | None:
    """What ``driver``'s server says of the domain; None when it cannot be asked."""
    try:
        return power_state(driver, vm)
    except DriverError:
        return None


def locate(vm: VirtualMachine, src_driver, dst_driver) -> str:
    """Where the guest of a migration is: SOURCE, TARGET, or UNKNOWN (a server did not
    answer, or neither or both run it)."""
    here, there = _state(src_driver, vm), _state(dst_driver, vm)
    if here is None or there is None:
        return UNKNOWN
    active = (PowerState.RUNNING, PowerState.PAUSED)
    if there in active and here == PowerState.ABSENT:
        return TARGET
    if here not in (PowerState.ABSENT,) and there not in active:
        return SOURCE
    return UNKNOWN


def _arrived(ctx, vm, source, target, there: tuple[int, int], stats: dict) -> dict:
    """The guest runs on ``target`` now: record it there, with the console ports it has there.
    Its status stays RUNNING throughout: a live migration never stops it."""
    vnc_port, serial_port = ports.move_console_ports(vm=vm, server=target, vnc_port=there[0], serial_port=there[1])
    vm_set_placement(vm=vm, server=target, job=ctx.job if ctx else None)
    elapsed_ms, downtime_ms = stats.get("time_elapsed"), stats.get("downtime")
    if stats.get("data_total") and ctx is not None:
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
        job=ctx.job if ctx else None,
        user=ctx.user if ctx else None,
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


def _migration_failed(ctx, vm, target, where: str, src_driver, dst_driver, error: Exception) -> None:
    """libvirt rolled the migration back: the guest runs on at the source (SOURCE), whose
    status is re-read; the target's volumes and any definition left there go. UNKNOWN:
    nothing is deleted, the journal keeps the target volumes for a later try."""
    reason = _("Migration of %(vm)s to %(s)s failed: %(err)s") % {"vm": vm.name, "s": target.name, "err": error}
    if where == UNKNOWN:
        ctx.log(_("Where %(vm)s runs is not known now: nothing is cleaned up yet.") % {"vm": vm.name})
        event_record(obj=vm, type="vm.migration_unsettled", job=ctx.job, text=reason)
        return
    _drop_target_leftovers(ctx.job, vm, dst_driver)
    vm.refresh_from_db(fields=["status"])
    vm_reconcile(vm=vm, power_state=_state(src_driver, vm) or PowerState.ABSENT, job=ctx.job, reason=reason)


def _drop_target_leftovers(job: Job, vm: VirtualMachine, dst_driver) -> None:
    """The guest runs on the source: a definition left on the target and the volumes made there go."""
    if _state(dst_driver, vm) not in (None, PowerState.ABSENT, PowerState.RUNNING, PowerState.PAUSED):
        try:
            dst_driver.undefine(str(vm.uuid))
        except DriverError as exc:
            log.warning("definition of %s left on the target: %s", vm.uuid, exc)
    storage_journal.journal_sweep(job)


def _copy_with_storage(ctx, vm, target, target_repo, disks, src_driver, dst_driver, options: dict) -> dict:
    """7.7: a VM on local storage migrates only while running, its disks copied along. The
    target volumes are journaled, then created (same names, sizes and formats); libvirt
    copies the data during the live migration."""
    target_pool = pool_name(target_repo, "disks")
    for disk in disks:
        storage_journal.journal_add(
            ctx.job,
            repository=target_repo,
            volume=disk.volume,
            disk_id=disk.pk,
            source_repository_id=disk.repository_id,
        )
        dst_driver.volume_create(target_pool, disk.volume, disk.size_bytes, format=disk.format, sparse=True)
    ctx.progress(8, _("%(n)d volume(s) created on %(s)s.") % {"n": len(disks), "s": target.name})
    disk_map = {disk_path(d): f"{target_repo.path}/VirtualDisks/{d.volume}" for d in disks}
    return src_driver.migrate_with_storage(str(vm.uuid), dst_driver, disk_map=disk_map, **options)


def storage_arrived(*, job: Job, vm: VirtualMachine, target_repo: Repository, src_driver, log) -> dict:
    """The guest runs on the target on the copies: record the disks there (standalone now),
    then delete their source volumes, except one a thin clone stands on, then the bases
    left without children. Idempotent (a recovery may run it again)."""
    moved, undeleted = [], []
    for entry in storage_journal.entries(job):
        disk = VirtualDisk.objects.select_related("repository", "backing_disk").filter(pk=entry.get("disk_id")).first()
        if disk is None or disk.repository_id != entry.get("source_repository_id"):
            continue
        old, base = disk.repository, disk.backing_disk
        vm_disks_relocated(vm=vm, disk_ids=[disk.pk], repository=target_repo, job=job)
        VirtualDisk.objects.filter(pk=disk.pk).update(backing_disk=None, format=disk.format)
        storage_journal.journal_remove(job, repository=target_repo, volume=disk.volume)
        moved.append(disk.pk)
        if disk.thin_clones.exists():
            log(_("Source volume %(v)s kept: thin clones stand on it.") % {"v": disk.volume})
        else:
            try:
                _delete_twice(src_driver, pool_name(old, "disks"), disk.volume)
            except DriverError as exc:
                # Journaled: the next sweep deletes it (no record names it there any more).
                log(_("Source volume %(v)s not deleted yet: %(e)s") % {"v": disk.volume, "e": exc})
                undeleted.append((old, disk.volume, base.pk if base else None))
                continue
        bases_release(base=base, job=job)
    if vm.repository is not None and vm.repository.kind == RepositoryKind.LOCAL:
        vm_set_placement(vm=vm, repository=target_repo, job=job)
    storage_journal.journal_remove(job)
    for repository, volume, base_id in undeleted:
        storage_journal.journal_add(job, repository=repository, volume=volume, base_id=base_id)
    result = {"repository_id": target_repo.pk, "disks_copied": len(moved)}
    if undeleted:
        result[storage_journal.KEY] = storage_journal.entries(job)  # kept in the job's result for the sweep
    return result


def _delete_twice(driver, pool: str, volume: str) -> None:
    """A dropped connection is opened again by the next call: one more try before journaling."""
    try:
        driver.volume_delete(pool, volume)
    except DriverError:
        driver.volume_delete(pool, volume)


def resolve_journal(job: Job) -> None:
    """Settle an ended ``vm.migrate`` job's target volumes by where its guest runs now."""
    left = storage_journal.entries(job)
    if not left:
        return
    if not any("disk_id" in e for e in left):
        storage_journal.journal_sweep(job)  # source volumes left after an arrival: plain deletions
        return
    vm = VirtualMachine.objects.select_related("server", "repository").filter(pk=job.params.get("vm_id")).first()
    target = Server.objects.filter(pk=job.params.get("target_server_id")).first()
    repo = Repository.objects.filter(pk=job.params.get("target_repository_id")).first()
    if vm is None or target is None or repo is None:
        storage_journal.journal_sweep(job)
        return
    source = _source_of(job, vm, target)
    if source is None:
        return
    where = locate(vm, driver_for(source), driver_for(target))
    if where == TARGET:
        if vm.server_id != target.pk:
            there = (vm.vnc_port, vm.serial_port)
            _arrived(None, vm, source, target, there, {})
        storage_arrived(job=job, vm=vm, target_repo=repo, src_driver=driver_for(source), log=log.info)
    elif where == SOURCE:
        _drop_target_leftovers(job, vm, driver_for(target))
        vm_reconcile(vm=vm, power_state=_state(driver_for(source), vm) or PowerState.ABSENT, job=job)


def _source_of(job: Job, vm: VirtualMachine, target: Server) -> Server | None:
    """The migration's source server: the VM's server unless the arrival was recorded; then
    the server of the source repository of a journaled disk."""
    if vm.server_id and vm.server_id != target.pk:
        return vm.server
    for entry in storage_journal.entries(job):
        repo = Repository.objects.filter(pk=entry.get("source_repository_id")).first()
        if repo is not None and repo.server_id:
            return repo.server
    return None


storage_journal.RESOLVERS["vm.migrate"] = resolve_journal


@receiver(job_interrupted, dispatch_uid="inventory.storage_journals_after_interrupted_job")
def settle_journals_after_interrupted_job(sender, job: Job, **kwargs) -> None:
    """A worker died mid-job: what its storage jobs were making is settled now."""
    storage_journal.journal_sweep_all()


@receiver(post_save, sender=Job, dispatch_uid="inventory.storage_journal_on_failure")
def _settle_failed_job(sender, instance: Job, update_fields=None, **kwargs) -> None:
    """A storage job that failed or was aborted settles its journal once that is committed
    (its operation's own handling ran first; what remains is what it could not do)."""
    from django.db import transaction

    if instance.status not in ("FAILURE", "ABORTED") or not (instance.result or {}).get(storage_journal.KEY):
        return
    if update_fields is not None and "status" not in update_fields:
        return
    transaction.on_commit(lambda: _settle_quietly(instance.pk))


def _settle_quietly(job_id: int) -> None:
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return
    try:
        storage_journal.journal_settle(job)
    except Exception:  # the next sweep tries again
        log.warning("journal of job #%s not settled", job_id, exc_info=True)
