"""Copies of a virtual machine (seed 7.6, 7.7, 7.17): clone (and a VM created from a
template or another VM), backup, move to other repositories, and export as an OVA.
Each submits a job that copies the disks."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import rules
from ..choices import DiskSlotKind, VmStatus
from ..models import (
    CloneCustomizer,
    ServerPool,
    VirtualMachine,
    VmDiskSlot,
)
from . import exports
from .vm_checks import (
    UPDATABLE_FIELDS,
    check_config,
    ensure_storage_reachable,
    repository_reachable,
)
from .vm_state import lock_vm_row, vm_set_status


def create_from_copy(
    *,
    user,
    name,
    server_pool,
    kind,
    source,
    domain_type,
    os_type,
    vcpus,
    max_vcpus,
    memory_mib,
    max_memory_mib,
    fields,
) -> VirtualMachine:
    """A VM copied from a template or another VM (its disks by a ``vm.clone`` job); vCPUs and
    memory default to the origin's, their maxima to at least the origin's."""
    origin = source.get("template") if kind == rules.SourceKind.TEMPLATE else source.get("vm")
    if not isinstance(origin, VirtualMachine):
        raise ValidationError({"source": [_("Name the virtual machine or template to copy.")]})
    if kind == rules.SourceKind.TEMPLATE and origin.status != VmStatus.TEMPLATE:
        raise ValidationError({"source": [_("%(vm)s is not a template.") % {"vm": origin.name}]})
    vcpus, memory_mib = vcpus or origin.vcpus, memory_mib or origin.memory_mib
    vm, _job = _clone(
        vm=origin,
        user=user,
        name=name,
        server_pool=server_pool,
        as_template=False,
        overrides={
            "domain_type": domain_type,
            "os_type": os_type,
            "vcpus": vcpus,
            "max_vcpus": max_vcpus or max(vcpus, origin.max_vcpus),
            "memory_mib": memory_mib,
            "max_memory_mib": max_memory_mib or max(memory_mib, origin.max_memory_mib),
            **fields,
        },
    )
    return vm


def _customizer_disks(customizer: CloneCustomizer | None) -> list:
    return list(customizer.disks.select_related("target_repository", "slot")) if customizer else []


def vm_clone(
    *,
    vm: VirtualMachine,
    user,
    name: str,
    customizer: CloneCustomizer | None = None,
    server_pool: ServerPool | None = None,
    as_template: bool = False,
) -> Job:
    """Clone a VM or template; a running VM only as a hot clone with every disk thin (7.6)."""
    _vm, job = _clone(
        vm=vm,
        user=user,
        name=name,
        customizer=customizer,
        server_pool=server_pool,
        as_template=as_template,
        overrides={},
    )
    return job


def vm_backup(*, vm: VirtualMachine, user, repository=None) -> Job:
    """Back up a VM the way seed 7.17 recommends: a cold clone, named
    ``<vm>-backup-<UTC timestamp>``, with its configuration and disks in ``repository``
    (default: the VM's own). A running VM is backed up only as a hot clone with every
    disk thin (7.6's rule, enforced by ``rules.check_clone``)."""
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-backup-{stamp}"
    name = vm.name[: VirtualMachine._meta.get_field("name").max_length - len(suffix)] + suffix
    if repository is not None and not repository_reachable(repository, vm.server_pool):
        raise ValidationError(
            {
                "repository": [
                    _("Repository %(repo)s is not seen by the server pool of %(vm)s.")
                    % {"repo": repository.name, "vm": vm.name}
                ]
            }
        )
    _vm, job = _clone(
        vm=vm,
        user=user,
        name=name,
        server_pool=None,
        as_template=False,
        overrides={},
        target_repository=repository,
        summary=_("Back up %(src)s to %(vm)s"),
    )
    return job


def _clone(
    *, vm, user, name, server_pool, as_template, overrides, customizer=None, target_repository=None, summary=None
):
    """A new VM copying ``vm``'s configuration and VNICs, and a ``vm.clone`` job copying its
    disks: each to the customizer's repository for its slot, else to ``target_repository``,
    else next to the original."""
    with transaction.atomic():
        source = lock_vm_row(vm)
        if customizer is not None and customizer.vm_id != source.pk:
            raise ValidationError({"customizer": [_("This clone customizer belongs to another virtual machine.")]})
        targets = {d.slot_id: d for d in _customizer_disks(customizer)}
        disk_slots = list(source.disk_slots.filter(kind=DiskSlotKind.DISK))
        clone_types = _clone_types(source, disk_slots, targets)
        rules.check_clone(vm=source, clone_types=clone_types)
        pool = server_pool or source.server_pool
        _check_clone_storage(
            source=source, pool=pool, disk_slots=disk_slots, targets=targets, target_repository=target_repository
        )
        clone = _clone_row(
            source=source,
            name=name,
            pool=pool,
            overrides=overrides,
            disk_slots=disk_slots,
            target_repository=target_repository,
        )
        if as_template:
            vm_set_status(
                vm=clone,
                status=VmStatus.TEMPLATE,
                user=user,
                reason=_("%(vm)s created as a template.") % {"vm": clone.name},
            )
        plan = _clone_plan(disk_slots, clone_types, targets=targets, target_repository=target_repository)
        # A simple clone does not copy the CD-ROM (7.6).
        _clone_vnics(source=source, clone=clone, user=user, customizer=customizer)
        event_record(
            obj=clone,
            type="vm.create",
            user=user,
            text=_("Virtual machine %(vm)s created as a clone of %(src)s.") % {"vm": clone.name, "src": source.name},
        )
        job = job_submit(
            operation="vm.clone",
            summary=(summary or _("Clone %(src)s to %(vm)s")) % {"src": source.name, "vm": clone.name},
            user=user,
            target=clone,
            lock=[clone],
            params={"vm_id": clone.pk, "source_vm_id": source.pk, "disks": plan},
        )
    return clone, job


def _clone_types(source: VirtualMachine, disk_slots: list[VmDiskSlot], targets: dict) -> list[str]:
    """Each disk's clone type: the customizer's, else thin for a running VM (a hot clone), else sparse."""
    from ..choices import CloneType

    return [
        targets[s.pk].clone_type
        if s.pk in targets
        else (CloneType.THIN if source.status == VmStatus.RUNNING else CloneType.SPARSE)
        for s in disk_slots
    ]


def _check_clone_storage(
    *, source: VirtualMachine, pool: ServerPool | None, disk_slots: list[VmDiskSlot], targets: dict, target_repository
) -> None:
    chosen = [d.target_repository for d in targets.values()] + ([target_repository] if target_repository else [])
    kept = [source.repository] if target_repository is None else []
    kept += [
        slot.virtual_disk.repository for slot in disk_slots if slot.pk not in targets and target_repository is None
    ]
    # Repositories the source already uses are seen by its own pool; another pool may not see them.
    same_pool = pool is not None and source.server_pool_id == pool.pk
    ensure_storage_reachable(repositories=chosen if same_pool else chosen + kept, pool=pool)


def _clone_row(
    *,
    source: VirtualMachine,
    name: str,
    pool: ServerPool | None,
    overrides: dict,
    disk_slots: list[VmDiskSlot],
    target_repository,
) -> VirtualMachine:
    """The clone's own row: the source's configuration with ``overrides``, checked against the rules."""
    fields = {f: getattr(source, f) for f in UPDATABLE_FIELDS - {"name", "ha_enabled", "origin"}}
    fields.update(overrides)
    check_config(cfg={**fields}, pool=pool, disk_buses=[s.bus for s in disk_slots])
    clone = VirtualMachine(
        name=name,
        server_pool=pool,
        repository=target_repository or source.repository,
        origin=_("clone of %(vm)s") % {"vm": source.name},
        **fields,
    )
    clone.full_clean()
    clone.save()
    return clone


def _clone_plan(
    disk_slots: list[VmDiskSlot], clone_types: list[str], *, targets: dict, target_repository
) -> list[dict[str, Any]]:
    """The ``vm.clone`` job's parameters: where each disk slot's copy goes, and how."""
    plan = []
    for slot, clone_type in zip(disk_slots, clone_types, strict=False):
        target_repo = (
            targets[slot.pk].target_repository
            if slot.pk in targets
            else target_repository or slot.virtual_disk.repository
        )
        plan.append(
            {
                "slot": slot.slot,
                "disk_id": slot.virtual_disk_id,
                "bus": slot.bus,
                "target_repository_id": target_repo.pk,
                "clone_type": clone_type,
            }
        )
    return plan


def _clone_vnics(*, source: VirtualMachine, clone: VirtualMachine, user, customizer: CloneCustomizer | None) -> None:
    """One VNIC per VNIC of the source, on the network the customizer names for it, else the same."""
    from .vnics import vnic_create

    net_map = {n.vnic_id: n.network for n in customizer.networks.all()} if customizer else {}
    for vnic in source.vnics.all():
        vnic_create(vm=clone, user=user, network=net_map.get(vnic.pk, vnic.network), model=vnic.model)


def vm_move(*, vm: VirtualMachine, user, customizer: CloneCustomizer | None = None, target_repository=None) -> Job:
    """Move the configuration and disks to other repositories; only when stopped (7.7).
    Either a clone customizer names each disk's target (its network changes are ignored
    by a move), or ``target_repository`` takes the configuration and every disk."""
    if (customizer is None) == (target_repository is None):
        raise ValidationError({"customizer": [_("Choose a clone customizer or a target repository.")]})
    with transaction.atomic():
        current = lock_vm_row(vm)
        params: dict[str, Any] = {"vm_id": current.pk}
        if customizer is not None:
            if customizer.vm_id != current.pk:
                raise ValidationError({"customizer": [_("This clone customizer belongs to another virtual machine.")]})
            disks = _customizer_disks(customizer)
            targets = [d.target_repository for d in disks]
            ensure_storage_reachable(repositories=targets, pool=current.server_pool)
            plan = [
                {"slot_id": d.slot_id, "target_repository_id": d.target_repository_id, "clone_type": d.clone_type}
                for d in disks
            ]
        else:
            from ..choices import CloneType

            if not repository_reachable(target_repository, current.server_pool):
                raise ValidationError(
                    {
                        "target_repository": [
                            _("Repository %(repo)s is not seen by the server pool of %(vm)s.")
                            % {"repo": target_repository.name, "vm": current.name}
                        ]
                    }
                )
            targets = [target_repository]
            plan = [
                {"slot_id": slot.pk, "target_repository_id": target_repository.pk, "clone_type": CloneType.SPARSE}
                for slot in current.disk_slots.filter(kind=DiskSlotKind.DISK)
            ]
            params["repository_id"] = target_repository.pk
        rules.check_move(vm=current, target_repositories=targets)
        params["disks"] = plan
        job = job_submit(
            operation="vm.move",
            summary=_("Move virtual machine %(vm)s") % {"vm": current.name},
            user=user,
            target=current,
            lock=[current],
            params=params,
        )
    return job


def vm_export(*, vm: VirtualMachine, user, repository=None, resume_job: Job | None = None) -> Job:
    """Export a stopped VM as an OVA (OVF + streamOptimized VMDKs) into ``<repository>/Assemblies/``
    (default: the VM's repository), or resume the aborted/failed export ``resume_job``
    (``services/exports.py``)."""
    if resume_job is not None:
        if resume_job.params.get("vm_id") != vm.pk:
            raise ValidationError(
                {"resume_job": [_("Job #%(id)s is not an export of %(vm)s.") % {"id": resume_job.pk, "vm": vm.name}]}
            )
        return exports.export_resume(job=resume_job, user=user)
    return exports.export_submit(vm=vm, user=user, repository=repository)
