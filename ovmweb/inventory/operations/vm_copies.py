"""The ``vm.clone`` and ``vm.move`` jobs (seed 7.6, 7.7): copy a VM's disks into the
clone's slots, or to other repositories. ``vm.export`` (an OVA of a stopped VM) lives
in ``exports.py``."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..models import Repository
from ..services.vm_devices import vm_slot_set_disk
from ..services.vm_state import vm_set_placement
from .vm_domain import load_vm


@operation("vm.clone")
def vm_clone(ctx: JobContext, *, vm_id: int, source_vm_id: int, disks: list[dict]) -> dict:
    """Copy each disk of the source (thin / sparse / non-sparse) into the clone's slots.
    The rules (hot clone only thin) were checked when the job was submitted."""
    from ..models import VirtualDisk
    from ..services import storage

    clone = load_vm(vm_id)
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
    from ..models import VmDiskSlot
    from ..services import storage

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
