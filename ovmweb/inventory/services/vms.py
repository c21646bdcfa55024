"""Writes on virtual machines: actions (seed 7.8), create, update and pending changes
(7.1, 7.2, 7.9, 7.13, 7.14, 7.15), delete. Every VM rule of the seed is enforced here, in
the other ``vm_*`` service modules or in ``rules.py``; views, serializers, consumers and
job operations only call these.

The VM services by capability: ``vm_state`` (status, row lock, placement record,
reconcile), ``vm_checks`` (configuration and reachability checks), ``vms`` (this module),
``vm_copies`` (clone, backup, move, export), ``vm_migration`` and ``vm_devices``
(disk slots). ``vms`` imports ``vm_copies`` and ``vm_migration``, never the reverse."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import Severity
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import hot_rules, rules
from ..choices import DiskSlotKind, VmAction, VmStatus
from ..exceptions import InvalidTransition
from ..models import (
    IsoFile,
    Server,
    ServerPool,
    VirtualDisk,
    VirtualMachine,
    VmDiskSlot,
)
from .pools import check_ha_allowed
from .vm_checks import (
    PLAIN_FIELDS,
    UPDATABLE_FIELDS,
    check_config,
    repository_reachable,
)
from .vm_copies import create_from_copy
from .vm_devices import check_not_thin_base
from .vm_migration import vm_migrate
from .vm_state import check_action, lock_vm_row, vm_payload, vm_set_status

_ACTION_PARAMS: dict[str, frozenset[str]] = {
    VmAction.START: frozenset({"server_id", "ha_failover"}),
    VmAction.RESTART: frozenset(),
    VmAction.STOP: frozenset(),
    VmAction.KILL: frozenset(),
    VmAction.SUSPEND: frozenset(),
    VmAction.RESUME: frozenset(),
}


def vm_action(*, vm: VirtualMachine, action: VmAction | str, user, **params: Any) -> Job:
    """THE place enforcing VM_ACTION_TABLE: checks the state, sets the immediate
    status atomically, and submits the job (``vm.<action>``)."""
    try:
        action = VmAction(action)
    except ValueError:
        raise ValidationError({"action": [_("Unknown action %(a)r.") % {"a": action}]}) from None
    if action == VmAction.MIGRATE:
        return vm_migrate(vm=vm, user=user, **params)
    unknown = set(params) - _ACTION_PARAMS[action]
    if unknown:
        raise ValidationError({k: [_("Unknown parameter.")] for k in sorted(unknown)})
    job_params: dict[str, Any] = {"vm_id": vm.pk}
    with transaction.atomic():
        current = lock_vm_row(vm)
        allowed, immediate = check_action(current, action)
        if action == VmAction.START and params.get("server_id") is not None:
            server = Server.objects.filter(pk=params["server_id"]).first()
            if server is None:
                raise ValidationError({"server_id": [_("No such server.")]})
            from .placement import check_server

            check_server(vm=current, server=server, ha_failover=bool(params.get("ha_failover")))
            job_params["server_id"] = server.pk
        if params.get("ha_failover"):
            job_params["ha_failover"] = True
        companions = {"ha_enabled": False} if action == VmAction.KILL else {}
        if immediate is not None:
            reason = _("%(action)s requested for %(vm)s: now %(status)s.") % {
                "action": action.label,
                "vm": current.name,
                "status": immediate,
            }
            if (
                vm_set_status(vm=current, status=immediate, only_from=allowed, reason=reason, user=user, **companions)
                is None
            ):
                current.refresh_from_db(fields=["status"])
                raise InvalidTransition(
                    vm_name=current.name, action=str(action), status=current.status, allowed=sorted(allowed)
                )
        # KILL takes no lock: it must work even while another job (a hanging
        # start) holds the VM; that job sees STOPPED when it tries to finish.
        lock = () if action == VmAction.KILL else [current]
        job = job_submit(
            operation=f"vm.{action.value}",
            summary=_("%(action)s virtual machine %(vm)s") % {"action": action.label, "vm": current.name},
            user=user,
            target=current,
            params=job_params,
            lock=lock,
        )
    vm.status, vm.ha_enabled = current.status, current.ha_enabled
    return job


def _config_of(vm: VirtualMachine) -> dict[str, Any]:
    cfg = {f: getattr(vm, f) for f in UPDATABLE_FIELDS}
    cfg.update(vm.pending_changes or {})
    return cfg


def _slot_buses(vm: VirtualMachine) -> list[str]:
    return [s.bus for s in vm.disk_slots.filter(kind=DiskSlotKind.DISK)]


def _iso_reachable(iso: IsoFile, pool: ServerPool | None) -> bool:
    return repository_reachable(iso.repository, pool)


def vm_create(
    *,
    user,
    name: str,
    server_pool: ServerPool | None = None,
    repository=None,
    domain_type: str,
    os_type: str,
    vcpus: int | None = None,
    max_vcpus: int | None = None,
    memory_mib: int | None = None,
    max_memory_mib: int | None = None,
    source: dict,
    disks: list[dict] | tuple = (),
    vnics: list[dict] | tuple = (),
    boot_order: list[str] | None = None,
    **fields: Any,
) -> VirtualMachine:
    """Create a stopped VM. Template and clone sources copy their disks through a
    ``vm.clone`` job, an appliance through ``appliance.deploy``; ISO, PVM URL and
    "none" sources need no job. vCPUs and memory default to 1 and 512 MiB (an
    appliance VM's own values for an appliance)."""
    unknown = set(fields) - (PLAIN_FIELDS | rules.RUNTIME_FIELDS)
    if unknown:
        raise ValidationError({k: [_("Unknown field.")] for k in sorted(unknown)})
    if fields.get("ha_enabled"):
        check_ha_allowed(pool=server_pool, vm_name=name)
    kind = (source or {}).get("kind", "")
    rules.check_install_source(domain_type=domain_type, kind=kind, url=(source or {}).get("url", ""))
    sizing = {"vcpus": vcpus, "max_vcpus": max_vcpus, "memory_mib": memory_mib, "max_memory_mib": max_memory_mib}
    if kind in (rules.SourceKind.TEMPLATE, rules.SourceKind.CLONE):
        return create_from_copy(
            user=user,
            name=name,
            server_pool=server_pool,
            kind=kind,
            source=source,
            domain_type=domain_type,
            os_type=os_type,
            fields=fields,
            **sizing,
        )
    if kind == rules.SourceKind.APPLIANCE:
        return _create_from_appliance(
            user=user,
            name=name,
            server_pool=server_pool,
            repository=repository,
            domain_type=domain_type,
            os_type=os_type,
            appliance_vm=source.get("appliance_vm"),
            vnics=vnics,
            fields=fields,
            **sizing,
        )
    return _create_installed(
        user=user,
        name=name,
        server_pool=server_pool,
        repository=repository,
        domain_type=domain_type,
        os_type=os_type,
        kind=kind,
        source=source,
        disks=disks,
        vnics=vnics,
        boot_order=boot_order,
        fields=fields,
        **sizing,
    )


def _create_installed(
    *,
    user,
    name,
    server_pool,
    repository,
    domain_type,
    os_type,
    kind,
    source,
    disks,
    vnics,
    boot_order,
    vcpus,
    max_vcpus,
    memory_mib,
    max_memory_mib,
    fields,
) -> VirtualMachine:
    """A VM installed from an ISO or a PVM URL, or with no source: no job, its disks are
    existing virtual disks or new empty ones."""
    vcpus = vcpus or 1
    memory_mib = memory_mib or 512

    cfg = {
        "domain_type": domain_type,
        "os_type": os_type,
        "vcpus": vcpus,
        "max_vcpus": max_vcpus or vcpus,
        "memory_mib": memory_mib,
        "max_memory_mib": max_memory_mib or memory_mib,
        "huge_pages": fields.get("huge_pages", False),
        "pvm_boot_url": source.get("url", "") if kind == "pvm_url" else "",
    }
    bus = rules.disk_bus_for(domain_type)
    disk_buses = [d.get("bus", bus) for d in disks]
    check_config(cfg=cfg, pool=server_pool, disk_buses=disk_buses)
    with transaction.atomic():
        vm = VirtualMachine(
            name=name,
            server_pool=server_pool,
            repository=repository,
            domain_type=domain_type,
            os_type=os_type,
            vcpus=vcpus,
            max_vcpus=cfg["max_vcpus"],
            memory_mib=memory_mib,
            max_memory_mib=cfg["max_memory_mib"],
            pvm_boot_url=cfg["pvm_boot_url"],
            **{k: v for k, v in fields.items() if k != "pvm_boot_url"},
        )
        _set_install_source(vm, kind=kind, source=source, server_pool=server_pool, boot_order=boot_order)
        vm.full_clean()
        vm.save()
        slot = _create_disk_slots(vm, user=user, disks=disks, disk_buses=disk_buses, repository=repository)
        if kind == rules.SourceKind.ISO:
            # HVM boots the ISO from an emulated CD-ROM; PVHVM too (BIOS boot).
            VmDiskSlot.objects.create(vm=vm, slot=slot, kind=DiskSlotKind.CDROM, iso=source["iso"], bus="sata")
        _create_vnics(vm, user=user, vnics=vnics)
        event_record(obj=vm, type="vm.create", text=_("Virtual machine %(vm)s created.") % {"vm": vm.name}, user=user)
        publish("vm", vm_payload(vm))
    return vm


def _set_install_source(
    vm: VirtualMachine, *, kind: str, source: dict, server_pool: ServerPool | None, boot_order: list[str] | None
) -> None:
    """The origin and boot order of a new VM, from its install source (an ISO the pool must see)."""
    if kind == rules.SourceKind.ISO:
        iso = source.get("iso")
        if not isinstance(iso, IsoFile):
            raise ValidationError({"source": [_("Name the ISO file to install from.")]})
        if not _iso_reachable(iso, server_pool):
            raise ValidationError(
                {"source": [_("ISO %(iso)s is in a repository this server pool cannot see.") % {"iso": iso.name}]}
            )
        vm.origin = f"iso:{iso.name}"
        vm.boot_order = boot_order or ["cdrom", "disk"]
    elif kind == rules.SourceKind.PVM_URL:
        vm.origin = vm.pvm_boot_url
        vm.boot_order = boot_order or ["disk"]
    else:
        vm.boot_order = boot_order or ["disk"]


def _create_disk_slots(vm: VirtualMachine, *, user, disks, disk_buses: list[str], repository) -> int:
    """Slots 0.. of a new VM, one per disk (an existing one or a new one); returns the next free slot."""
    slot = 0
    for item, disk_bus in zip(disks, disk_buses, strict=False):
        disk = item.get("virtual_disk")
        if disk is None:
            disk = _new_disk(user=user, spec=item.get("new") or {}, default_repository=repository)
        if not isinstance(disk, VirtualDisk):
            raise ValidationError({"disks": [_("Each disk is an existing virtual disk or a new one.")]})
        check_not_thin_base(disk)
        VmDiskSlot.objects.create(vm=vm, slot=slot, kind=DiskSlotKind.DISK, virtual_disk=disk, bus=disk_bus)
        slot += 1
    return slot


def _create_vnics(vm: VirtualMachine, *, user, vnics) -> None:
    from .vnics import vnic_create

    for item in vnics:
        vnic_create(vm=vm, user=user, network=item.get("network"), model=item.get("model"))


def _create_from_appliance(
    *,
    user,
    name,
    server_pool,
    repository,
    domain_type,
    os_type,
    vcpus,
    max_vcpus,
    memory_mib,
    max_memory_mib,
    appliance_vm,
    vnics,
    fields,
) -> VirtualMachine:
    """A VM from one VM of a virtual appliance: its disks are copied into VirtualDisks/ of
    ``repository`` (default: the appliance's) by an ``appliance.deploy`` job."""
    from ..models import VirtualApplianceVm

    if not isinstance(appliance_vm, VirtualApplianceVm):
        raise ValidationError({"source": [_("Name the virtual machine of the appliance to create from.")]})
    appliance = appliance_vm.appliance
    repository = repository or appliance.repository
    vcpus, memory_mib = vcpus or appliance_vm.vcpus, memory_mib or appliance_vm.memory_mib
    cfg = {
        "domain_type": domain_type,
        "os_type": os_type,
        "vcpus": vcpus,
        "max_vcpus": max_vcpus or vcpus,
        "memory_mib": memory_mib,
        "max_memory_mib": max_memory_mib or memory_mib,
        "huge_pages": fields.get("huge_pages", False),
        "pvm_boot_url": fields.get("pvm_boot_url", ""),
    }
    bus = rules.disk_bus_for(domain_type)
    disks = list(appliance_vm.disks.order_by("pk"))
    check_config(cfg=cfg, pool=server_pool, disk_buses=[bus] * len(disks))
    if not repository_reachable(repository, server_pool):
        raise ValidationError(
            {"repository": [_("Repository %(repo)s is not seen by this server pool.") % {"repo": repository.name}]}
        )
    with transaction.atomic():
        from .appliances import check_appliance_kept

        check_appliance_kept(appliance)
        vm = VirtualMachine(
            name=name,
            server_pool=server_pool,
            repository=repository,
            domain_type=domain_type,
            os_type=os_type,
            vcpus=vcpus,
            max_vcpus=cfg["max_vcpus"],
            memory_mib=memory_mib,
            max_memory_mib=cfg["max_memory_mib"],
            boot_order=["disk"],
            origin=f"appliance:{appliance.name}/{appliance_vm.name}"[:255],
            **fields,
        )
        vm.full_clean()
        vm.save()
        _create_vnics(vm, user=user, vnics=vnics)
        event_record(
            obj=vm,
            type="vm.create",
            user=user,
            text=_("Virtual machine %(vm)s created from appliance %(app)s.") % {"vm": vm.name, "app": appliance.name},
        )
        plan = [{"slot": i, "disk_id": d.pk, "bus": bus} for i, d in enumerate(disks)]
        job_submit(
            operation="appliance.deploy",
            summary=_("Copy the disks of appliance %(app)s to %(vm)s") % {"app": appliance.name, "vm": vm.name},
            user=user,
            target=vm,
            lock=[vm],
            params={"vm_id": vm.pk, "appliance_id": appliance.pk, "target_repository_id": repository.pk, "disks": plan},
        )
        publish("vm", vm_payload(vm))
    return vm


def _new_disk(*, user, spec: dict, default_repository) -> VirtualDisk:
    """A new, empty virtual disk through the storage service (its volume is created by a job)."""
    from . import storage  # helper D's module

    repository = spec.get("repository") or default_repository
    if repository is None:
        raise ValidationError({"disks": [_("A new disk needs a repository.")]})
    job = storage.disk_create(
        user=user,
        repository=repository,
        name=spec.get("name") or "disk",
        size_bytes=spec.get("size_bytes") or 0,
        sparse=spec.get("sparse", True),
    )
    disk = job.target if isinstance(job, Job) else job
    if not isinstance(disk, VirtualDisk):
        raise ValidationError({"disks": [_("The storage service did not return the new disk.")]})
    return disk


def _check_ha_switched_on(vm: VirtualMachine, changes: dict[str, Any]) -> None:
    # Only switching HA on is checked: a server without leases joining later does not freeze the VM's edits.
    if changes.get("ha_enabled") and not vm.ha_enabled:
        check_ha_allowed(pool=vm.server_pool, vm_name=vm.name)


def vm_update(*, vm: VirtualMachine, user, **changes: Any) -> VirtualMachine:
    """Edit a VM. On a stopped VM (or template) every change applies at once. On a
    running VM runtime parameters are saved as pending and take effect at the next
    stop + start (7.9) — except vCPUs and memory, which change hot where the guest
    OS supports it (7.13, 7.14) and stay within the running maximum."""
    unknown = set(changes) - UPDATABLE_FIELDS
    if unknown:
        raise ValidationError({k: [_("Unknown or read-only field.")] for k in sorted(unknown)})
    hot: dict[str, Any] = {}
    with transaction.atomic():
        current = lock_vm_row(vm)
        _check_ha_switched_on(current, changes)
        cfg = _config_of(current)
        cfg.update(changes)
        # The rules are checked on the configuration the VM will boot with next.
        check_config(cfg=cfg, pool=current.server_pool, disk_buses=_slot_buses(current))
        plain = {k: v for k, v in changes.items() if k in PLAIN_FIELDS}
        runtime = {k: v for k, v in changes.items() if k in rules.RUNTIME_FIELDS}
        for field, value in plain.items():
            setattr(current, field, value)
        pending = dict(current.pending_changes or {})
        if current.status in VmStatus.INACTIVE:
            for field, value in runtime.items():
                setattr(current, field, value)
            pending = {}
        else:
            for field, value in runtime.items():
                if current.status == VmStatus.RUNNING and _can_change_hot(current, field, value):
                    hot[field] = value
                    pending.pop(field, None)
                elif value == getattr(current, field):
                    pending.pop(field, None)  # back to what runs: nothing pending
                else:
                    pending[field] = value
            for field, value in hot.items():
                setattr(current, field, value)
        current.pending_changes = pending
        current.full_clean()
        current.save()
        event_record(
            obj=current,
            type="vm.config",
            user=user,
            text=_("Configuration of %(vm)s changed%(pending)s.")
            % {
                "vm": current.name,
                "pending": (_("; pending until stop and start: %(f)s") % {"f": ", ".join(sorted(pending))})
                if pending
                else "",
            },
        )
        if hot:
            job_submit(
                operation="vm.hot_update",
                summary=_("Change %(f)s of running virtual machine %(vm)s")
                % {"f": ", ".join(sorted(hot)), "vm": current.name},
                user=user,
                target=current,
                params={"vm_id": current.pk, "changes": hot},
                lock=[current],
            )
        publish("vm", vm_payload(current))
    return current


_HOT_COMPONENT = {"vcpus": (hot_rules.Hot.VCPU, "max_vcpus"), "memory_mib": (hot_rules.Hot.MEMORY, "max_memory_mib")}


def _can_change_hot(vm: VirtualMachine, field: str, value: Any) -> bool:
    if field not in _HOT_COMPONENT or value == getattr(vm, field):
        return False
    component, max_field = _HOT_COMPONENT[field]
    # The running maximum is the one the domain was started with, not a pending one.
    return value <= getattr(vm, max_field) and hot_rules.vm_hot_change_refusal(vm, component) is None


def vm_apply_pending(*, vm: VirtualMachine, user=None, job: Job | None = None) -> VirtualMachine:
    """Apply the pending runtime changes (called by the vm.start operation, never by restart)."""
    with transaction.atomic():
        current = lock_vm_row(vm)
        pending = current.pending_changes or {}
        if not pending:
            return current
        for field, value in pending.items():
            setattr(current, field, value)
        current.pending_changes = {}
        current.full_clean()
        current.save()
        event_record(
            obj=current,
            type="vm.config",
            user=user,
            job=job,
            text=_("Pending changes of %(vm)s applied: %(f)s.") % {"vm": current.name, "f": ", ".join(sorted(pending))},
        )
        publish("vm", vm_payload(current))
    return current


def vm_revert_hot_change(
    *, vm: VirtualMachine, field: str, running_value: Any, wanted: Any, job: Job | None = None, error: str = ""
) -> VirtualMachine:
    """A hot change the hypervisor refused: keep what runs, leave the wish pending."""
    with transaction.atomic():
        current = lock_vm_row(vm)
        setattr(current, field, running_value)
        current.pending_changes = {**(current.pending_changes or {}), field: wanted}
        current.full_clean()
        current.save()
        event_record(
            obj=current,
            type="vm.config",
            severity=Severity.WARNING,
            job=job,
            text=_("Hot change of %(f)s failed (%(err)s); it is pending until stop and start.")
            % {"f": field, "err": error},
        )
        publish("vm", vm_payload(current))
    return current


def vm_delete(*, vm: VirtualMachine, user) -> Job:
    with transaction.atomic():
        current = lock_vm_row(vm)
        if current.status not in VmStatus.INACTIVE:
            raise Conflict(
                _("Cannot delete virtual machine '%(vm)s' while it is %(status)s; stop it first.")
                % {"vm": current.name, "status": current.status}
            )
        return job_submit(
            operation="vm.delete",
            summary=_("Delete virtual machine %(vm)s") % {"vm": current.name},
            user=user,
            target=current,
            lock=[current],
            params={"vm_id": current.pk},
        )


def vm_remove(*, vm: VirtualMachine, job: Job | None = None) -> None:
    """Drop the VM row (the vm.delete operation calls this after undefining the domain)."""
    with transaction.atomic():
        name, pk = vm.name, vm.pk
        event_record(obj=None, type="vm.delete", text=_("Virtual machine %(vm)s deleted.") % {"vm": name}, job=job)
        vm.delete()
        publish("vm", {"id": pk, "deleted": True})
