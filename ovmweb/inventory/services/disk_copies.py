"""Copies of virtual disks that stay what they were when taken (point-in-time).

Invariants:

- A thin clone never stands on a disk a VM writes to. Cloning disk D thin freezes D's
  file as a read-only *base* (a ``VirtualDisk`` with ``thin_base``, attached to no VM)
  and puts two qcow2 overlays on it, each naming the base by absolute path and
  recorded format: D's new file (D keeps its record; the VM's domain is defined from
  the record at each start) and the clone's. O(1), whatever the disk's size.
- A base with a child (``thin_clones``) is never deleted; a base left without one is
  deleted with its last child, then its own base likewise (``bases_release``).
- A chain is at most ``OVMWEB_THIN_CHAIN_MAX`` overlays deep; ``disk_flatten`` makes an
  overlay standalone again (a full copy read through its chain).
- A running VM's disks are copied by the hypervisor's backup job (``hot_copies``): the
  copy is the disk at the job's start, a standalone qcow2; the VM's disk is not changed.
"""

from __future__ import annotations

import uuid as uuidlib

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DriverError
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from ..choices import VmStatus
from ..models import Repository, VirtualDisk, VirtualMachine
from .repositories import pool_name, repository_servers
from .vm_devices import disk_path

DEFAULT_CHAIN_MAX = 8


def chain_depth(disk: VirtualDisk) -> int:
    """How many backing images stand under ``disk``."""
    depth, current = 0, disk
    while current.backing_disk_id is not None:
        depth += 1
        current = current.backing_disk
    return depth


def _check_not_in_use(disk: VirtualDisk) -> None:
    active = disk.slots.filter(vm__status__in=list(VmStatus.ACTIVE)).values_list("vm__name", flat=True).first()
    if active:
        raise Conflict(
            _("Virtual disk %(disk)s is in use by %(vm)s, which is not stopped.") % {"disk": disk.name, "vm": active}
        )


def _schedule_configs(disk: VirtualDisk) -> None:
    from .storage import vm_config_schedule

    for vm_id in disk.slots.values_list("vm_id", flat=True):
        vm_config_schedule(vm_id=vm_id)


def _new_volume() -> str:
    return f"{uuidlib.uuid4().hex}.qcow2"


def thin_clone(
    *, disk: VirtualDisk, target_repository: Repository, name: str, job: Job | None = None, owned: bool = False
) -> VirtualDisk:
    """A thin clone of ``disk`` (its VMs stopped) on a shared read-only base (see the module).
    Both new overlays are journaled before they exist (``storage_journal``); ``owned``: the
    clone's stays journaled until the caller's ``journal_remove`` (see ``storage.disk_clone``)."""
    from .storage import repository_driver
    from .storage_journal import journal_add, journal_remove

    _check_not_in_use(disk)
    limit = getattr(settings, "OVMWEB_THIN_CHAIN_MAX", DEFAULT_CHAIN_MAX)
    if chain_depth(disk) + 1 > limit:
        raise Conflict(
            _("Virtual disk %(disk)s already stands on %(n)d thin-clone bases; flatten it before cloning it thin.")
            % {"disk": disk.name, "n": chain_depth(disk)}
        )
    driver = repository_driver(disk.repository)
    pool, target_pool = pool_name(disk.repository, "disks"), pool_name(target_repository, "disks")
    overlay, clone_volume = _new_volume(), _new_volume()
    made: list[tuple[str, str]] = []
    journal_add(job, repository=disk.repository, volume=overlay)
    journal_add(job, repository=target_repository, volume=clone_volume, owned=True)
    try:
        for where, volume in ((pool, overlay), (target_pool, clone_volume)):
            driver.volume_clone(
                pool, disk.volume, where, volume, clone_type="thin", source_format=disk.format, format="qcow2"
            )
            made.append((where, volume))
        clone = _record_thin(
            disk=disk, overlay=overlay, clone_volume=clone_volume, target=target_repository, name=name, job=job
        )
    except BaseException:
        for where, volume in made:
            driver.volume_delete(where, volume)
        journal_remove(job, repository=disk.repository, volume=overlay)
        journal_remove(job, repository=target_repository, volume=clone_volume)
        raise
    journal_remove(job, repository=disk.repository, volume=overlay)
    if not owned:
        journal_remove(job, repository=target_repository, volume=clone_volume)
    # Only once it is a base: a failed clone leaves the source's file as writable as it was.
    driver.volume_protect(pool, clone.backing_disk.volume)
    return clone


@transaction.atomic
def _record_thin(*, disk, overlay, clone_volume, target, name, job) -> VirtualDisk:
    """The base takes the source's frozen file; the source record moves to its overlay."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    suffix = f" (base {stamp})"
    base = VirtualDisk(
        name=disk.name[: 255 - len(suffix)] + suffix,
        repository=disk.repository,
        volume=disk.volume,
        size_bytes=disk.size_bytes,
        allocation_bytes=disk.allocation_bytes,
        format=disk.format,
        sparse=disk.sparse,
        backing_disk=disk.backing_disk,
        thin_base=True,
    )
    VirtualDisk.objects.filter(pk=disk.pk).update(volume=overlay, format="qcow2", backing_disk=None, allocation_bytes=0)
    base.full_clean(validate_unique=False)
    base.save()
    VirtualDisk.objects.filter(pk=disk.pk).update(backing_disk=base)
    disk.refresh_from_db()
    clone = VirtualDisk(
        name=name,
        repository=target,
        volume=clone_volume,
        size_bytes=disk.size_bytes,
        format="qcow2",
        sparse=True,
        shareable=disk.shareable,
        backing_disk=base,
    )
    clone.full_clean()
    clone.save()
    _schedule_configs(disk)
    event_record(
        obj=clone,
        type="disk.cloned",
        job=job,
        text=_("Virtual disk %(name)s cloned thin from %(src)s: both stand on the read-only base %(base)s.")
        % {"name": name, "src": disk.name, "base": base.name},
    )
    return clone


def hot_copies(*, vm: VirtualMachine, items: list[dict], job: Job | None = None, check_abort=None) -> list[VirtualDisk]:
    """Copy disks of running ``vm`` at one instant (one backup job for all of them) into new
    standalone qcow2 volumes. ``items``: ``disk`` (VirtualDisk), ``target`` (Repository),
    ``name``. The job log says whether the guest froze its file systems."""
    from ovmweb.hypervisor.connections import driver_for

    from .storage import repository_driver

    if vm.server is None:
        raise Conflict(_("%(vm)s runs on no known server.") % {"vm": vm.name})
    for item in items:
        if vm.server not in repository_servers(item["target"]):
            raise Conflict(
                _("Repository %(repo)s is not presented to %(server)s, where %(vm)s runs.")
                % {"repo": item["target"].name, "server": vm.server.name, "vm": vm.name}
            )
        item["volume"] = _new_volume()
    from .storage_journal import journal_add, journal_remove

    for item in items:  # owned: the caller takes each copy out of the journal once a VM uses it
        journal_add(job, repository=item["target"], volume=item["volume"], owned=True)
    copies = {disk_path(i["disk"]): f"{i['target'].path}/VirtualDisks/{i['volume']}" for i in items}
    try:
        result = driver_for(vm.server).disks_backup(str(vm.uuid), copies, check_abort=check_abort)
        made = [_record_hot(item, repository_driver(item["target"]), job) for item in items]
    except BaseException:
        for item in items:
            _forget_volume(item)
            journal_remove(job, repository=item["target"], volume=item["volume"])
        raise
    text = (
        _("Copied at one instant while %(vm)s ran; its guest agent froze the file systems.")
        if result.quiesced
        else _("Copied at one instant while %(vm)s ran; no guest agent answered: crash-consistent, like a power cut.")
    )
    event_record(obj=vm, type="vm.hot_copy", text=text % {"vm": vm.name}, job=job)
    return made


def _forget_volume(item: dict) -> None:
    from .storage import repository_driver

    try:
        driver = repository_driver(item["target"])
        driver.pool_refresh(pool_name(item["target"], "disks"))
        driver.volume_delete(pool_name(item["target"], "disks"), item["volume"])
    except Exception:  # nosec B110  # cleanup after a failure that is being raised
        pass


def _record_hot(item: dict, driver, job) -> VirtualDisk:
    pool = pool_name(item["target"], "disks")
    driver.pool_refresh(pool)
    info = driver.volume_info(pool, item["volume"])
    source = item["disk"]
    with transaction.atomic():
        copy = VirtualDisk(
            name=item["name"],
            repository=item["target"],
            volume=item["volume"],
            size_bytes=info.capacity_bytes,
            allocation_bytes=info.allocation_bytes,
            format="qcow2",
            sparse=True,
            shareable=source.shareable,
        )
        copy.full_clean()
        copy.save()
        event_record(
            obj=copy,
            type="disk.cloned",
            job=job,
            text=_("Virtual disk %(name)s copied from running %(src)s as it was at the copy's start.")
            % {"name": copy.name, "src": source.name},
        )
    return copy


def disk_flatten(*, disk: VirtualDisk, user) -> Job:
    """Submit a ``disk.flatten`` job: make a thin clone (or a thin-cloned disk) standalone."""
    if disk.backing_disk_id is None:
        raise Conflict(_("Virtual disk %(disk)s stands on no base: nothing to flatten.") % {"disk": disk.name})
    _check_not_in_use(disk)
    with transaction.atomic():
        return job_submit(
            operation="disk.flatten",
            summary=_("Flatten virtual disk %(name)s") % {"name": disk.name},
            user=user,
            target=disk,
            params={"disk_id": disk.pk},
            lock=[disk],
        )


def flatten_run(*, disk: VirtualDisk, job: Job | None = None) -> VirtualDisk:
    """The ``disk.flatten`` job's work: copy the disk read through its chain into a new
    standalone volume, switch the record to it, delete the overlay, release the bases."""
    from .storage import repository_driver

    _check_not_in_use(disk)
    base = disk.backing_disk
    if base is None:
        return disk
    driver = repository_driver(disk.repository)
    pool = pool_name(disk.repository, "disks")
    volume = _new_volume()
    kind = "sparse" if disk.sparse else "non_sparse"
    info = driver.volume_clone(pool, disk.volume, pool, volume, clone_type=kind, source_format=disk.format)
    old = disk.volume
    with transaction.atomic():
        VirtualDisk.objects.filter(pk=disk.pk).update(
            volume=volume, format="qcow2", backing_disk=None, allocation_bytes=info.allocation_bytes
        )
        disk.refresh_from_db()
        _schedule_configs(disk)
        event_record(
            obj=disk, type="disk.flattened", job=job, text=_("Virtual disk %(disk)s flattened.") % {"disk": disk.name}
        )
    driver.volume_delete(pool, old)
    bases_release(base=base, job=job)
    return disk


def bases_release(*, base: VirtualDisk | None, job: Job | None = None) -> list[str]:
    """Delete ``base`` if it is a thin-clone base no clone stands on any more, then its own
    base likewise. Returns the names deleted."""
    from .storage import disk_forget, repository_driver

    deleted = []
    while base is not None and base.thin_base:
        base = VirtualDisk.objects.select_related("repository", "backing_disk").get(pk=base.pk)
        if base.thin_clones.exists() or base.slots.exists():
            break
        below = base.backing_disk
        repository_driver(base.repository).volume_delete(pool_name(base.repository, "disks"), base.volume)
        deleted.append(base.name)
        disk_forget(disk=base, job=job)
        base = below
    return deleted


def vm_disks_release(*, disks: list[VirtualDisk], job: Job | None = None) -> dict:
    """After a VM's deletion: delete each of its disks that no other VM uses and nothing
    stands on (then the bases left childless), keep the others and say why."""
    from .storage import disk_forget, repository_driver

    deleted, kept = [], []
    for disk in disks:
        disk = VirtualDisk.objects.select_related("repository", "backing_disk").get(pk=disk.pk)
        reason = ""
        if disk.slots.exists():
            reason = _("also used by %(vm)s") % {"vm": disk.slots.values_list("vm__name", flat=True).first()}
        elif disk.thin_clones.exists():
            reason = _("thin clones stand on it (%(n)d)") % {"n": disk.thin_clones.count()}
        if reason:
            _keep(disk, reason, kept, job)
            continue
        base = disk.backing_disk
        try:
            repository_driver(disk.repository).volume_delete(pool_name(disk.repository, "disks"), disk.volume)
        except (DriverError, Conflict) as exc:  # the VM is gone already: keep the record, say why
            _keep(disk, _("its volume could not be deleted: %(error)s") % {"error": exc}, kept, job)
            continue
        deleted.append(disk.name)
        disk_forget(disk=disk, job=job)
        deleted += bases_release(base=base, job=job)
    return {"deleted_disks": deleted, "kept_disks": kept}


def _keep(disk: VirtualDisk, reason: str, kept: list, job: Job | None) -> None:
    kept.append({"disk": disk.name, "reason": reason})
    event_record(
        obj=disk,
        type="disk.kept",
        job=job,
        text=_("Virtual disk %(disk)s kept: %(reason)s.") % {"disk": disk.name, "reason": reason},
    )
