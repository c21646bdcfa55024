"""A VM's disk slots: attaching and detaching virtual disks and ISOs (hot where the guest
allows it, 7.14), the slots clone, move and migration jobs fill, and the paths of disks
and ISOs on the servers (the repository layout)."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import hot_rules, rules
from ..choices import DiskSlotKind, VmStatus
from ..models import (
    IsoFile,
    VirtualDisk,
    VirtualMachine,
    VmDiskSlot,
)
from .vm_checks import (
    repository_reachable,
)
from .vm_state import lock_vm_row, vm_payload


def disk_path(disk: VirtualDisk) -> str:
    """Where a virtual disk lives on the servers that see its repository (the contract's layout)."""
    return f"{disk.repository.path}/VirtualDisks/{disk.volume}"


def check_not_thin_base(disk: VirtualDisk) -> None:
    """A thin-clone base is read-only: a VM writing to it would change every clone standing on it."""
    if disk.thin_base:
        raise Conflict(
            _("%(disk)s is the read-only base of thin clones; attach one of its clones, or a copy.")
            % {"disk": disk.name}
        )


def iso_path(iso: IsoFile) -> str:
    return f"{iso.repository.path}/ISOs/{iso.name}"


def vm_disk_attach(
    *,
    vm: VirtualMachine,
    user,
    virtual_disk: VirtualDisk | None = None,
    iso: IsoFile | None = None,
    bus: str | None = None,
) -> VmDiskSlot:
    """Attach a virtual disk, or an ISO as CD-ROM, to a VM. On a running VM it is hot-plugged
    where the guest OS allows it (7.14); never while SUSPENDED (7.4's rule for devices).
    An ISO goes into an empty CD-ROM drive when the VM has one (a media change)."""
    if (virtual_disk is None) == (iso is None):
        raise ValidationError({"virtual_disk": [_("Attach either a virtual disk or an ISO file.")]})
    with transaction.atomic():
        current = lock_vm_row(vm)
        hot_rules.check_device_change(current, hot_rules.Hot.DISK)
        repository = (virtual_disk or iso).repository
        if not repository_reachable(repository, current.server_pool):
            raise ValidationError(
                {
                    "virtual_disk": [
                        _("%(name)s is in a repository this server pool cannot see.")
                        % {"name": (virtual_disk or iso).name}
                    ]
                }
            )
        slots = list(current.disk_slots.all())
        params: dict[str, Any] = {"vm_id": current.pk}
        if virtual_disk is not None:
            bus = bus or rules.disk_bus_for(current.domain_type)
            rules.check_paravirtual_disks(domain_type=current.domain_type, disk_buses=[bus])
            if virtual_disk.appliance_vms.exists():
                raise ValidationError(
                    {
                        "virtual_disk": [
                            _(
                                "%(disk)s belongs to a virtual appliance; create a virtual machine "
                                "from the appliance to get a copy."
                            )
                            % {"disk": virtual_disk.name}
                        ]
                    }
                )
            check_not_thin_base(virtual_disk)
            if any(s.virtual_disk_id == virtual_disk.pk for s in slots):
                raise Conflict(
                    _("%(disk)s is already attached to %(vm)s.") % {"disk": virtual_disk.name, "vm": current.name}
                )
            other = virtual_disk.slots.exclude(vm=current).select_related("vm").first()
            if other is not None and not virtual_disk.shareable:
                raise Conflict(
                    _("%(disk)s is used by %(other)s and is not shareable.")
                    % {"disk": virtual_disk.name, "other": other.vm.name}
                )
            row = VmDiskSlot(
                vm=current, slot=_free_slot(slots), kind=DiskSlotKind.DISK, virtual_disk=virtual_disk, bus=bus
            )
        else:
            empty = next((s for s in slots if s.kind == DiskSlotKind.EMPTY), None)
            if empty is not None:
                row, empty.kind, empty.iso = empty, DiskSlotKind.CDROM, iso
                params["media"] = {"current": "", "new": iso_path(iso)}
            else:
                row = VmDiskSlot(vm=current, slot=_free_slot(slots), kind=DiskSlotKind.CDROM, iso=iso, bus="sata")
        row.full_clean()
        row.save()
        what = virtual_disk.name if virtual_disk is not None else iso.name
        event_record(
            obj=current,
            type="vm.disk",
            user=user,
            text=_("%(what)s attached to %(vm)s in slot %(slot)d.")
            % {"what": what, "vm": current.name, "slot": row.slot},
        )
        if current.status == VmStatus.RUNNING:
            if "media" not in params:
                params["attach_slot_id"] = row.pk
            job_submit(
                operation="vm.hot_update",
                summary=_("Hot-add %(what)s to %(vm)s") % {"what": what, "vm": current.name},
                user=user,
                target=current,
                params=params,
                lock=[current],
            )
        publish("vm", vm_payload(current))
    return row


def vm_disk_detach(*, slot: VmDiskSlot, user) -> None:
    """Detach a disk slot. A CD-ROM of a running VM is ejected (the drive stays, empty) and
    needs a guest that can hot-remove CD-ROMs (7.14)."""
    with transaction.atomic():
        current = lock_vm_row(slot.vm)
        slot = VmDiskSlot.objects.select_related("virtual_disk__repository", "iso__repository").get(pk=slot.pk)
        component = hot_rules.Hot.DISK if slot.kind == DiskSlotKind.DISK else hot_rules.Hot.CDROM_REMOVE
        hot_rules.check_device_change(current, component)
        running = current.status == VmStatus.RUNNING
        params: dict[str, Any] = {"vm_id": current.pk}
        if slot.kind == DiskSlotKind.DISK:
            what = slot.virtual_disk.name
            params["detach_disk"] = {"path": disk_path(slot.virtual_disk), "device": "disk"}
            slot.delete()
        elif slot.kind == DiskSlotKind.CDROM:
            what = slot.iso.name
            params["media"] = {"current": iso_path(slot.iso), "new": ""}
            if running:
                slot.kind, slot.iso = DiskSlotKind.EMPTY, None
                slot.full_clean()
                slot.save()
            else:
                slot.delete()
        else:
            what = _("empty CD-ROM drive")
            if running:
                raise Conflict(_("An empty CD-ROM drive of a running virtual machine stays until it stops."))
            slot.delete()
        event_record(
            obj=current,
            type="vm.disk",
            user=user,
            text=_("%(what)s detached from %(vm)s.") % {"what": what, "vm": current.name},
        )
        if running:
            job_submit(
                operation="vm.hot_update",
                summary=_("Hot-remove %(what)s from %(vm)s") % {"what": what, "vm": current.name},
                user=user,
                target=current,
                params=params,
                lock=[current],
            )
        publish("vm", vm_payload(current))


def _free_slot(slots: list[VmDiskSlot]) -> int:
    used = {s.slot for s in slots}
    free = next((i for i in range(64) if i not in used), None)
    if free is None:
        raise Conflict(_("Every disk slot of this virtual machine is taken."))
    return free


def vm_disks_relocated(*, vm: VirtualMachine, disk_ids: list[int], repository, job: Job | None = None) -> None:
    """Record that the listed disks (same volume names) now live in ``repository`` (a live
    migration copied them there)."""
    with transaction.atomic():
        VirtualDisk.objects.filter(pk__in=disk_ids).update(repository=repository, updated_at=timezone.now())
        event_record(
            obj=vm,
            type="vm.disk",
            job=job,
            text=_("%(n)d disk(s) of %(vm)s copied to repository %(repo)s.")
            % {"n": len(disk_ids), "vm": vm.name, "repo": repository.name},
        )


def vm_slot_set_disk(
    *, vm: VirtualMachine, slot: int, disk: VirtualDisk, bus: str, job: Job | None = None
) -> VmDiskSlot:
    """Put ``disk`` into disk slot ``slot`` of ``vm`` (clone and move jobs)."""
    with transaction.atomic():
        row, _created = VmDiskSlot.objects.update_or_create(
            vm=vm, slot=slot, defaults={"kind": DiskSlotKind.DISK, "virtual_disk": disk, "iso": None, "bus": bus}
        )
        row.full_clean()
        event_record(
            obj=vm,
            type="vm.disk",
            job=job,
            text=_("Disk %(disk)s in slot %(slot)d of %(vm)s.") % {"disk": disk.name, "slot": slot, "vm": vm.name},
        )
    return row


def new_volume_name() -> str:
    return f"{uuidlib.uuid4().hex}.qcow2"
