"""The ``vm.clone`` and ``vm.move`` jobs (seed 7.6, 7.7): copy a VM's disks into the
clone's slots, or to other repositories. ``vm.export`` (an OVA of a stopped VM) lives
in ``exports.py``."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..choices import VmStatus
from ..models import IsoFile, Repository, VirtualDisk, VirtualMachine, VmDiskSlot
from ..services import disk_copies, storage, storage_journal
from ..services.vm_devices import vm_slot_set_disk
from ..services.vm_state import vm_set_placement
from .vm_domain import load_vm


@operation("vm.clone")
def vm_clone(ctx: JobContext, *, vm_id: int, source_vm_id: int, disks: list[dict]) -> dict:
    """Copy each disk of the source into the clone's slots. The rules (a hot clone only
    thin, seed 7.6) were checked when the job was submitted. A stopped source's disks are
    cloned thin (on a shared read-only base), sparse or non-sparse, one by one; a running
    source's disks all at one instant by the hypervisor's backup job (``_hot_clone``)."""
    storage_journal.journal_sweep_all()  # leftovers of earlier faults first
    clone = load_vm(vm_id)
    source = VirtualMachine.objects.select_related("server").filter(pk=source_vm_id).first()
    if source is not None and source.status == VmStatus.RUNNING and disks:
        _hot_clone(ctx, clone, source, disks)
        return {"vm_id": clone.pk, "disks": len(disks), "hot": True}
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
            owned=True,
        )
        vm_slot_set_disk(vm=clone, slot=item["slot"], disk=new, bus=item["bus"], job=ctx.job)
        storage_journal.journal_remove(ctx.job, repository=target, volume=new.volume)
        ctx.progress(int(100 * (index + 1) / max(len(disks), 1)), _("Disk %(n)d cloned.") % {"n": index + 1})
    return {"vm_id": clone.pk, "disks": len(disks)}


def _hot_clone(ctx: JobContext, clone, source, disks: list[dict]) -> None:
    """A running VM's disks, copied as they were when the backup job started: standalone
    volumes, the running VM's disks untouched (an overlay on a disk it keeps writing
    would change after the clone was taken)."""
    items = [
        {
            "disk": VirtualDisk.objects.select_related("repository").get(pk=item["disk_id"]),
            "target": Repository.objects.get(pk=item["target_repository_id"]),
            "name": f"{clone.name}-{item['slot']}",
            "slot": item["slot"],
            "bus": item["bus"],
        }
        for item in disks
    ]
    ctx.progress(5, _("Copying %(n)d disks of running %(vm)s at one instant.") % {"n": len(items), "vm": source.name})
    copies = disk_copies.hot_copies(vm=source, items=items, job=ctx.job, check_abort=ctx.check_abort)
    for item, new in zip(items, copies, strict=True):
        vm_slot_set_disk(vm=clone, slot=item["slot"], disk=new, bus=item["bus"], job=ctx.job)
        storage_journal.journal_remove(ctx.job, repository=new.repository, volume=new.volume)
    ctx.progress(100, _("Disks copied."))


@operation("disk.flatten")
def disk_flatten(ctx: JobContext, *, disk_id: int) -> dict:
    """Make a disk standalone: no base under it any more (``disk_copies.flatten_run``)."""
    disk = VirtualDisk.objects.select_related("repository", "backing_disk").get(pk=disk_id)
    disk_copies.flatten_run(disk=disk, job=ctx.job)
    return {"disk_id": disk.pk, "volume": disk.volume}


@operation("vm.move")
def vm_move(ctx: JobContext, *, vm_id: int, disks: list[dict], repository_id: int | None = None) -> dict:
    """Copy each listed disk to its target repository, and each attached ISO to the
    configuration's (seed 7.7: copied, not moved), all journaled as the job's own copies;
    then, in one transaction (the commit point), switch the slots and the configuration's
    repository and journal the originals for deletion; then delete them. Shareable disks
    and ISOs are copied, not moved: their originals stay. A fault before the commit point
    leaves the VM as it was (its copies are swept); after it, the sweep finishes the deletions."""
    storage_journal.journal_sweep_all()
    vm = load_vm(vm_id)
    target_id = repository_id or (disks[0]["target_repository_id"] if disks else None)
    config_repo = Repository.objects.get(pk=target_id) if target_id is not None else None
    copies = _move_copies(ctx, vm, disks)
    isos = _iso_copies(ctx, vm, config_repo) if config_repo is not None else []
    with transaction.atomic():
        for slot, old, new in copies:
            vm_slot_set_disk(vm=vm, slot=slot.slot, disk=new, bus=slot.bus, job=ctx.job)
            storage_journal.journal_remove(ctx.job, repository=new.repository, volume=new.volume)
            if not old.shareable and not old.thin_clones.exists():
                storage_journal.journal_add(
                    ctx.job, repository=old.repository, volume=old.volume, base_id=old.backing_disk_id
                )
                storage.disk_forget(disk=old, job=ctx.job)
        for slot, iso in isos:
            VmDiskSlot.objects.filter(pk=slot.pk).update(iso=iso)
            storage_journal.journal_remove(ctx.job, repository=iso.repository, volume=iso.name)
        if config_repo is not None:
            vm_set_placement(vm=vm, repository=config_repo, job=ctx.job)
    ctx.progress(95, _("Configuration in %(repo)s.") % {"repo": config_repo.name if config_repo else "-"})
    left = storage_journal.journal_sweep(ctx.job)
    if left:
        ctx.log(_("%(n)d original volume(s) not deleted yet: the next sweep does it.") % {"n": len(left)})
    return {"moved_disk_ids": [new.pk for _slot, _old, new in copies], "isos_copied": len(isos)}


def _move_copies(ctx: JobContext, vm: VirtualMachine, disks: list[dict]) -> list[tuple]:
    """Each disk copied into its target repository (the job's own copy until the commit point)."""
    made = []
    for index, item in enumerate(disks):
        ctx.check_abort()
        slot = VmDiskSlot.objects.select_related("virtual_disk__repository").get(pk=item["slot_id"], vm=vm)
        old = slot.virtual_disk
        target = Repository.objects.get(pk=item["target_repository_id"])
        if old is None or old.repository_id == target.pk:
            continue
        new = storage.disk_clone(
            disk=old, target_repository=target, clone_type=item["clone_type"], name=old.name, job=ctx.job, owned=True
        )
        made.append((slot, old, new))
        ctx.progress(int(80 * (index + 1) / max(len(disks), 1)), _("Disk %(name)s copied.") % {"name": old.name})
    return made


def _iso_copies(ctx: JobContext, vm: VirtualMachine, target: Repository) -> list[tuple]:
    """Each ISO attached to ``vm`` from another repository, copied into ``target`` (an ISO of
    the same name there is used as it is)."""
    from ..services.repositories import pool_name

    made = []
    for slot in VmDiskSlot.objects.filter(vm=vm).exclude(iso=None).select_related("iso__repository"):
        iso = slot.iso
        if iso.repository_id == target.pk:
            continue
        existing = IsoFile.objects.filter(repository=target, name=iso.name).first()
        if existing is None:
            ctx.check_abort()
            storage_journal.journal_add(ctx.job, repository=target, volume=iso.name, part="isos", owned=True)
            storage.repository_driver(iso.repository).volume_clone(
                pool_name(iso.repository, "isos"),
                iso.name,
                pool_name(target, "isos"),
                iso.name,
                clone_type="sparse",
                source_format="raw",
                format="raw",
            )
            existing = storage.iso_record(
                repository=target, name=iso.name, size_bytes=iso.size_bytes, sha256=iso.sha256, job=ctx.job
            )
        made.append((slot, existing))
    return made
