"""The ``vm.clone`` and ``vm.move`` jobs (seed 7.6, 7.7): copy a VM's disks into the
clone's slots, or to other repositories. ``vm.export`` (an OVA of a stopped VM) lives
in ``exports.py``."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..choices import VmStatus
from ..models import Repository, VirtualDisk, VirtualMachine
from ..services import disk_copies, storage
from ..services.vm_devices import vm_slot_set_disk
from ..services.vm_state import vm_set_placement
from .vm_domain import load_vm


@operation("vm.clone")
def vm_clone(ctx: JobContext, *, vm_id: int, source_vm_id: int, disks: list[dict]) -> dict:
    """Copy each disk of the source into the clone's slots. The rules (a hot clone only
    thin, seed 7.6) were checked when the job was submitted. A stopped source's disks are
    cloned thin (on a shared read-only base), sparse or non-sparse, one by one; a running
    source's disks all at one instant by the hypervisor's backup job (``_hot_clone``)."""
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
        )
        vm_slot_set_disk(vm=clone, slot=item["slot"], disk=new, bus=item["bus"], job=ctx.job)
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
    ctx.progress(100, _("Disks copied."))


@operation("disk.flatten")
def disk_flatten(ctx: JobContext, *, disk_id: int) -> dict:
    """Make a disk standalone: no base under it any more (``disk_copies.flatten_run``)."""
    disk = VirtualDisk.objects.select_related("repository", "backing_disk").get(pk=disk_id)
    disk_copies.flatten_run(disk=disk, job=ctx.job)
    return {"disk_id": disk.pk, "volume": disk.volume}


@operation("vm.move")
def vm_move(ctx: JobContext, *, vm_id: int, disks: list[dict], repository_id: int | None = None) -> dict:
    """Copy each listed disk to its target repository, switch the slot to the copy, then
    delete the original — except shareable disks, which are copied, not moved (7.7)."""
    from ..models import VmDiskSlot

    vm = load_vm(vm_id)
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
