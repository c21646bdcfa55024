"""Clone customizers (seed 7.6, 7.7): per-disk target repository and clone type, and the
network of each VNIC, used by an advanced clone or a move.

A clone or move job copies the customizer's plan into its own parameters when it is
queued, so editing or deleting a customizer never changes a job already queued: there
is no "in use" state to refuse a change for.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.jobs.services import event_record

from ..choices import CloneType, DiskSlotKind
from ..models import CloneCustomizer, CloneCustomizerDisk, CloneCustomizerNetwork, VirtualMachine


def customizer_create(
    *, vm: VirtualMachine, user, name: str, description: str = "", disks: list[dict] = (), networks: list[dict] = ()
) -> CloneCustomizer:
    """``disks``: ``{"slot": VmDiskSlot, "target_repository": Repository, "clone_type": CloneType}``;
    ``networks``: ``{"vnic": Vnic, "network": Network}``. Everything must belong to ``vm``,
    and every target repository must be seen by the VM's server pool."""
    with transaction.atomic():
        customizer = CloneCustomizer(vm=vm, name=name, description=description)
        customizer.full_clean()
        customizer.save()
        _add_items(customizer, disks=disks, networks=networks)
        event_record(
            obj=vm,
            type="customizer.create",
            user=user,
            text=_("Clone customizer %(name)s of %(vm)s created.") % {"name": name, "vm": vm.name},
        )
    return customizer


def customizer_update(
    *,
    customizer: CloneCustomizer,
    user,
    name: str | None = None,
    description: str | None = None,
    disks: list[dict] | None = None,
    networks: list[dict] | None = None,
) -> CloneCustomizer:
    """Rename or re-describe a customizer; ``disks``/``networks``, when given, replace the
    whole list (same item shapes and checks as ``customizer_create``). It stays with its VM."""
    with transaction.atomic():
        customizer = CloneCustomizer.objects.select_for_update().select_related("vm").get(pk=customizer.pk)
        if name is not None:
            customizer.name = name
        if description is not None:
            customizer.description = description
        customizer.full_clean()
        customizer.save()
        if disks is not None:
            customizer.disks.all().delete()
        if networks is not None:
            customizer.networks.all().delete()
        _add_items(customizer, disks=disks or (), networks=networks or ())
        event_record(
            obj=customizer.vm,
            type="customizer.update",
            user=user,
            text=_("Clone customizer %(name)s of %(vm)s changed.")
            % {"name": customizer.name, "vm": customizer.vm.name},
        )
    return customizer


def _add_items(customizer: CloneCustomizer, *, disks, networks) -> None:
    # The one rule of where a VM's storage may go lives with the VM services.
    from .vm_checks import repository_reachable

    vm = customizer.vm
    for item in disks:
        slot, target = item["slot"], item["target_repository"]
        if slot.vm_id != vm.pk or slot.kind != DiskSlotKind.DISK:
            raise ValidationError(
                {"disks": [_("Slot %(s)s is not a disk of %(vm)s.") % {"s": slot.slot, "vm": vm.name}]}
            )
        if not repository_reachable(target, vm.server_pool):
            raise ValidationError(
                {
                    "disks": [
                        _("Repository %(repo)s is not seen by the server pool of %(vm)s.")
                        % {"repo": target.name, "vm": vm.name}
                    ]
                }
            )
        row = CloneCustomizerDisk(
            customizer=customizer,
            slot=slot,
            target_repository=target,
            clone_type=item.get("clone_type") or CloneType.SPARSE,
        )
        row.full_clean()
        row.save()
    for item in networks:
        vnic = item["vnic"]
        if vnic.vm_id != vm.pk:
            raise ValidationError(
                {"networks": [_("VNIC %(m)s is not a VNIC of %(vm)s.") % {"m": vnic.mac, "vm": vm.name}]}
            )
        row = CloneCustomizerNetwork(customizer=customizer, vnic=vnic, network=item["network"])
        row.full_clean()
        row.save()


def customizer_delete(*, customizer: CloneCustomizer, user) -> None:
    """Delete a customizer and its rows. Queued clones and moves keep their own copy of its plan."""
    with transaction.atomic():
        vm, name = customizer.vm, customizer.name
        customizer.delete()
        event_record(
            obj=vm,
            type="customizer.delete",
            user=user,
            text=_("Clone customizer %(name)s of %(vm)s deleted.") % {"name": name, "vm": vm.name},
        )
