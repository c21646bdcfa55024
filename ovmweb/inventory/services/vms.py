"""Writes on virtual machines. Every VM rule of the seed is enforced here or in
``rules.py``; views, serializers, consumers and job operations only call these."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, LockConflict
from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import rules
from ..choices import VM_ACTION_TABLE, DiskSlotKind, DomainType, RepositoryKind, VmAction, VmStatus
from ..exceptions import InvalidTransition
from ..models import (
    CloneCustomizer,
    IsoFile,
    Server,
    ServerPool,
    VirtualDisk,
    VirtualMachine,
    VmDiskSlot,
)

# Fields written together with the status, in the same UPDATE (kill clears HA,
# stop releases ports): vm_set_status is still the only writer of ``status``.
_STATUS_COMPANIONS = frozenset({"ha_enabled", "server", "vnc_port", "serial_port"})

# Editable through vm_update. Placement fields (server_pool, server, repository)
# change only through migrate and move; status only through actions.
PLAIN_FIELDS = frozenset(
    {"name", "description", "os_type", "guest_kernel", "pv_drivers_installed", "ha_enabled", "origin"}
)
UPDATABLE_FIELDS = PLAIN_FIELDS | rules.RUNTIME_FIELDS

_ACTION_PARAMS: dict[str, frozenset[str]] = {
    VmAction.START: frozenset({"server_id", "ha_failover"}),
    VmAction.RESTART: frozenset(),
    VmAction.STOP: frozenset(),
    VmAction.KILL: frozenset(),
    VmAction.SUSPEND: frozenset(),
    VmAction.RESUME: frozenset(),
}


def vm_payload(vm: VirtualMachine) -> dict[str, Any]:
    return {
        "id": vm.pk,
        "name": vm.name,
        "status": vm.status,
        "server_id": vm.server_id,
        "server_pool_id": vm.server_pool_id,
        "pending_changes": vm.pending_changes,
        "ha_enabled": vm.ha_enabled,
    }


# --------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------


def vm_set_status(
    *,
    vm: VirtualMachine,
    status: str,
    reason: str = "",
    severity: str = Severity.INFO,
    event_type: str = "vm.state",
    only_from: frozenset[str] | set[str] | None = None,
    user=None,
    job: Job | None = None,
    **companions: Any,
) -> VirtualMachine | None:
    """The only writer of ``vm.status``. Records an event and publishes a live ``vm`` update.

    With ``only_from`` the change is a conditional UPDATE: it happens only if the
    row is in one of those states at that instant, and the function returns None
    otherwise (so of two racing callers exactly one wins). A TEMPLATE never leaves
    TEMPLATE (seed 7.8)."""
    bad = set(companions) - _STATUS_COMPANIONS
    if bad:
        raise TypeError(f"vm_set_status cannot write {sorted(bad)}")
    status = VmStatus(status)
    with transaction.atomic():
        qs = VirtualMachine.objects.filter(pk=vm.pk)
        if status != VmStatus.TEMPLATE:
            qs = qs.exclude(status=VmStatus.TEMPLATE)
        if only_from is not None:
            qs = qs.filter(status__in=list(only_from))
        previous = vm.status
        if not qs.update(status=status, updated_at=timezone.now(), **companions):
            return None
        vm.status = status
        for field, value in companions.items():
            setattr(vm, field, value)
        text = reason or _("Virtual machine %(vm)s is %(status)s.") % {"vm": vm.name, "status": status}
        if previous != status or reason:
            event_record(obj=vm, type=event_type, text=text, severity=severity, user=user, job=job)
        publish("vm", vm_payload(vm))
    return vm


def _lock_row(vm: VirtualMachine) -> VirtualMachine:
    # On PostgreSQL this row lock serialises concurrent actions; on SQLite the
    # IMMEDIATE transaction already holds the database write lock from BEGIN.
    return (
        VirtualMachine.objects.select_for_update(of=("self",))
        .select_related("server_pool", "server", "repository")
        .get(pk=vm.pk)
    )


# --------------------------------------------------------------------------
# actions (seed 7.8)
# --------------------------------------------------------------------------


def _check_action(vm: VirtualMachine, action: str) -> tuple[frozenset[str], str | None]:
    allowed, immediate = VM_ACTION_TABLE[action]
    if vm.status not in allowed:
        raise InvalidTransition(vm_name=vm.name, action=str(action), status=vm.status, allowed=sorted(allowed))
    return allowed, immediate


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
        current = _lock_row(vm)
        allowed, immediate = _check_action(current, action)
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


# --------------------------------------------------------------------------
# create / update / pending changes (seed 7.1, 7.2, 7.9, 7.13, 7.14, 7.15)
# --------------------------------------------------------------------------


def _check_config(*, cfg: dict[str, Any], pool: ServerPool | None, disk_buses: list[str]) -> None:
    """Every rule about a VM configuration, on the configuration it will boot with."""
    errors: dict[str, list] = {}
    for check in (
        lambda: rules.check_cpu_memory(
            vcpus=cfg["vcpus"],
            max_vcpus=cfg["max_vcpus"],
            memory_mib=cfg["memory_mib"],
            max_memory_mib=cfg["max_memory_mib"],
        ),
        lambda: rules.check_domain_type(
            domain_type=cfg["domain_type"],
            os_type=cfg["os_type"],
            pool_architecture=pool.architecture if pool else None,
        ),
        lambda: rules.check_huge_pages(domain_type=cfg["domain_type"], huge_pages=cfg["huge_pages"]),
        lambda: rules.check_paravirtual_disks(domain_type=cfg["domain_type"], disk_buses=disk_buses),
        lambda: (
            rules.check_pvm_url(cfg["pvm_boot_url"])
            if cfg["domain_type"] == DomainType.PVM and cfg["pvm_boot_url"]
            else None
        ),
    ):
        try:
            check()
        except ValidationError as exc:
            for field, msgs in exc.message_dict.items():
                errors.setdefault(field, []).extend(msgs)
    if errors:
        raise ValidationError(errors)


def _config_of(vm: VirtualMachine) -> dict[str, Any]:
    cfg = {f: getattr(vm, f) for f in UPDATABLE_FIELDS}
    cfg.update(vm.pending_changes or {})
    return cfg


def _slot_buses(vm: VirtualMachine) -> list[str]:
    return [s.bus for s in vm.disk_slots.filter(kind=DiskSlotKind.DISK)]


def _iso_reachable(iso: IsoFile, pool: ServerPool | None) -> bool:
    return _repository_reachable(iso.repository, pool)


def _repository_reachable(repo, pool: ServerPool | None) -> bool:
    if pool is None:
        return True
    if repo.kind == RepositoryKind.LOCAL:
        return repo.server is not None and repo.server.server_pool_id == pool.pk
    return repo.server_pools.filter(pk=pool.pk).exists()


def _ensure_storage_reachable(*, repositories, pool: ServerPool | None) -> None:
    """A clone or a move places the VM's files in ``repositories``; the server pool it will
    run in must see each of them (7.6/7.7). Checked when the job is requested: a clone
    customizer was checked against the VM's pool when it was saved, and the VM may have
    changed pools since, or the clone may go to another pool."""
    for repo in dict.fromkeys(repositories):
        if not _repository_reachable(repo, pool):
            raise Conflict(
                _("Repository %(repo)s is not seen by server pool %(pool)s.") % {"repo": repo.name, "pool": pool.name}
            )


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
    kind = (source or {}).get("kind", "")
    rules.check_install_source(domain_type=domain_type, kind=kind, url=(source or {}).get("url", ""))
    sizing = {"vcpus": vcpus, "max_vcpus": max_vcpus, "memory_mib": memory_mib, "max_memory_mib": max_memory_mib}
    if kind in (rules.SourceKind.TEMPLATE, rules.SourceKind.CLONE):
        return _create_from_copy(
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


def _create_from_copy(
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
    _check_config(cfg=cfg, pool=server_pool, disk_buses=disk_buses)
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
    _check_config(cfg=cfg, pool=server_pool, disk_buses=[bus] * len(disks))
    if not _repository_reachable(repository, server_pool):
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
        current = _lock_row(vm)
        cfg = _config_of(current)
        cfg.update(changes)
        # The rules are checked on the configuration the VM will boot with next.
        _check_config(cfg=cfg, pool=current.server_pool, disk_buses=_slot_buses(current))
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


_HOT_COMPONENT = {"vcpus": (rules.Hot.VCPU, "max_vcpus"), "memory_mib": (rules.Hot.MEMORY, "max_memory_mib")}


def _can_change_hot(vm: VirtualMachine, field: str, value: Any) -> bool:
    if field not in _HOT_COMPONENT or value == getattr(vm, field):
        return False
    component, max_field = _HOT_COMPONENT[field]
    # The running maximum is the one the domain was started with, not a pending one.
    return value <= getattr(vm, max_field) and rules.vm_hot_change_refusal(vm, component) is None


def vm_apply_pending(*, vm: VirtualMachine, user=None, job: Job | None = None) -> VirtualMachine:
    """Apply the pending runtime changes (called by the vm.start operation, never by restart)."""
    with transaction.atomic():
        current = _lock_row(vm)
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
        current = _lock_row(vm)
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


# --------------------------------------------------------------------------
# migrate / clone / move / export / delete (seed 7.6, 7.7, 7.12, 7.16)
# --------------------------------------------------------------------------


def vm_migrate(
    *,
    vm: VirtualMachine,
    user,
    target_server: Server | None = None,
    target_pool: ServerPool | None = None,
    ha_failover: bool = False,
    target_repository=None,
) -> Job:
    """A running VM migrates live to a server of its pool; a stopped one may go to
    another pool (unassigned there until it starts). A running VM on a local
    repository migrates with its disks copied into ``target_repository`` (default: the
    first local repository of the target server)."""
    with transaction.atomic():
        current = _lock_row(vm)
        if current.status == VmStatus.STOPPED:
            return _migrate_cold(current, user=user, target_server=target_server, target_pool=target_pool)
        return _migrate_live(
            current,
            user=user,
            target_server=target_server,
            target_pool=target_pool,
            ha_failover=ha_failover,
            target_repository=target_repository,
        )


def _migrate_cold(
    current: VirtualMachine, *, user, target_server: Server | None, target_pool: ServerPool | None
) -> Job:
    """A stopped VM goes to ``target_pool`` (or none), and onto a server there when it starts."""
    if target_server is not None:
        raise ValidationError(
            {
                "target_server": [
                    _("A stopped virtual machine migrates to a server pool; it is placed on a server when it starts.")
                ]
            }
        )
    rules.check_cold_migration(vm=current, target_pool=target_pool)
    return job_submit(
        operation="vm.migrate",
        summary=_("Migrate virtual machine %(vm)s to %(pool)s")
        % {"vm": current.name, "pool": target_pool.name if target_pool else _("unassigned")},
        user=user,
        target=current,
        lock=[current],
        params={"vm_id": current.pk, "target_pool_id": target_pool.pk if target_pool else None},
    )


def _migrate_live(
    current: VirtualMachine,
    *,
    user,
    target_server: Server | None,
    target_pool: ServerPool | None,
    ha_failover: bool,
    target_repository,
) -> Job:
    """A running VM moves to another server of its pool, with its disks if they are local."""
    _check_action(current, VmAction.MIGRATE)
    if target_pool is not None and target_pool.pk != current.server_pool_id:
        raise Conflict(
            _("Live migration stays within one server pool; stop '%(vm)s' to move it to %(pool)s.")
            % {"vm": current.name, "pool": target_pool.name}
        )
    if current.server is None:
        raise Conflict(_("'%(vm)s' runs on no known server.") % {"vm": current.name})
    from .placement import check_server, choose_server

    storage = rules.needs_storage_migration(current)
    if storage:
        target_server, target_repository = _storage_migration_target(
            current, target_server=target_server, target_repository=target_repository, ha_failover=ha_failover
        )
    elif target_server is None:
        target_server = choose_server(vm=current, exclude=[current.server], ha_failover=ha_failover)
    else:
        check_server(vm=current, server=target_server, ha_failover=ha_failover)
    rules.check_live_migration(vm=current, source=current.server, target=target_server)
    params = {"vm_id": current.pk, "target_server_id": target_server.pk, "storage_migration": storage}
    if storage:
        params["target_repository_id"] = target_repository.pk
    return job_submit(
        operation="vm.migrate",
        summary=_("Live-migrate virtual machine %(vm)s to %(server)s")
        % {"vm": current.name, "server": target_server.name},
        user=user,
        target=current,
        lock=[current],
        params=params,
    )


def _storage_migration_target(
    current: VirtualMachine, *, target_server: Server | None, target_repository, ha_failover: bool
) -> tuple[Server, Any]:
    """The server and repository a VM on local storage migrates to, with its disks: the server
    must be named (or be the one of the named repository); the repository defaults to the
    server's first local one."""
    from .placement import check_server

    if target_server is None and target_repository is not None and target_repository.server_id:
        target_server = target_repository.server
    if target_server is None:
        raise ValidationError(
            {
                "target_server": [
                    _("'%(vm)s' lives in a local repository: name the server (or its repository) to migrate it to.")
                    % {"vm": current.name}
                ]
            }
        )
    if target_repository is None:
        from ..models import Repository

        target_repository = (
            Repository.objects.filter(kind=RepositoryKind.LOCAL, server=target_server).order_by("pk").first()
        )
    rules.check_storage_migration(vm=current, target=target_server, target_repository=target_repository)
    check_server(vm=current, server=target_server, ha_failover=ha_failover, repository=target_repository)
    return target_server, target_repository


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
    if repository is not None and not _repository_reachable(repository, vm.server_pool):
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
        source = _lock_row(vm)
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
    _ensure_storage_reachable(repositories=chosen if same_pool else chosen + kept, pool=pool)


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
    _check_config(cfg={**fields}, pool=pool, disk_buses=[s.bus for s in disk_slots])
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
        current = _lock_row(vm)
        params: dict[str, Any] = {"vm_id": current.pk}
        if customizer is not None:
            if customizer.vm_id != current.pk:
                raise ValidationError({"customizer": [_("This clone customizer belongs to another virtual machine.")]})
            disks = _customizer_disks(customizer)
            targets = [d.target_repository for d in disks]
            _ensure_storage_reachable(repositories=targets, pool=current.server_pool)
            plan = [
                {"slot_id": d.slot_id, "target_repository_id": d.target_repository_id, "clone_type": d.clone_type}
                for d in disks
            ]
        else:
            from ..choices import CloneType

            if not _repository_reachable(target_repository, current.server_pool):
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
    from . import exports

    if resume_job is not None:
        if resume_job.params.get("vm_id") != vm.pk:
            raise ValidationError(
                {"resume_job": [_("Job #%(id)s is not an export of %(vm)s.") % {"id": resume_job.pk, "vm": vm.name}]}
            )
        return exports.export_resume(job=resume_job, user=user)
    return exports.export_submit(vm=vm, user=user, repository=repository)


def vm_delete(*, vm: VirtualMachine, user) -> Job:
    with transaction.atomic():
        current = _lock_row(vm)
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


_KEEP = object()


def vm_set_placement(
    *,
    vm: VirtualMachine,
    server_pool: Any = _KEEP,
    server: Any = _KEEP,
    repository: Any = _KEEP,
    job: Job | None = None,
) -> VirtualMachine:
    """Record where a VM now lives after a migrate or move job (``None`` clears a field)."""
    updates = {
        k: v
        for k, v in (("server_pool", server_pool), ("server", server), ("repository", repository))
        if v is not _KEEP
    }
    with transaction.atomic():
        current = _lock_row(vm)
        for k, v in updates.items():
            setattr(current, k, v)
        current.full_clean()
        current.save()
        where = ", ".join(f"{k}={v if v is not None else '-'}" for k, v in updates.items())
        event_record(
            obj=current,
            type="vm.placement",
            job=job,
            text=_("%(vm)s placement changed: %(where)s.") % {"vm": current.name, "where": where},
        )
        publish("vm", vm_payload(current))
    vm.server_pool, vm.server, vm.repository = current.server_pool, current.server, current.repository
    return current


# The hypervisor's word on a domain, in the seed's states (7.8: a stopped domain
# with a suspend file is SUSPENDED; one that cannot be found is STOPPED).
POWER_TO_STATUS = {
    "running": VmStatus.RUNNING,
    "paused": VmStatus.SUSPENDED,
    "saved": VmStatus.SUSPENDED,
    "shutting_down": VmStatus.STOPPING,
    "shutoff": VmStatus.STOPPED,
    "crashed": VmStatus.STOPPED,
    "absent": VmStatus.STOPPED,
}


def vm_reconcile(*, vm: VirtualMachine, power_state: str, job: Job | None = None, reason: str = "") -> VirtualMachine:
    """Bring ``vm.status`` in line with what the hypervisor reports (monitor, recovery).
    A stopped VM gives its console ports back."""
    status = POWER_TO_STATUS[str(getattr(power_state, "value", power_state))]
    if vm.status == VmStatus.TEMPLATE or vm.status == status:
        return vm
    companions = {"vnc_port": None, "serial_port": None} if status == VmStatus.STOPPED else {}
    vm_set_status(
        vm=vm,
        status=status,
        job=job,
        severity=Severity.WARNING if status == VmStatus.STOPPED else Severity.INFO,
        reason=reason or _("%(vm)s found %(status)s on its server.") % {"vm": vm.name, "status": status},
        **companions,
    )
    return vm


def disk_path(disk: VirtualDisk) -> str:
    """Where a virtual disk lives on the servers that see its repository (the contract's layout)."""
    return f"{disk.repository.path}/VirtualDisks/{disk.volume}"


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
        current = _lock_row(vm)
        rules.check_device_change(current, rules.Hot.DISK)
        repository = (virtual_disk or iso).repository
        if not _repository_reachable(repository, current.server_pool):
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
        current = _lock_row(slot.vm)
        slot = VmDiskSlot.objects.select_related("virtual_disk__repository", "iso__repository").get(pk=slot.pk)
        component = rules.Hot.DISK if slot.kind == DiskSlotKind.DISK else rules.Hot.CDROM_REMOVE
        rules.check_device_change(current, component)
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


# --------------------------------------------------------------------------
# jobs that end without keeping the status they promised (7.8)
# --------------------------------------------------------------------------

# The operations whose submit put the VM in a promised status (STARTING, STOPPING).
VM_STATE_OPERATIONS = frozenset({"vm.start", "vm.stop", "vm.restart", "vm.suspend", "vm.resume"})
_PROMISED = (VmStatus.STARTING, VmStatus.STOPPING)


@receiver(post_save, sender=Job, dispatch_uid="inventory.vm_reread_after_unfinished_action")
def _vm_action_job_ended(sender, instance: Job, update_fields=None, **kwargs) -> None:
    """An action job that failed or was aborted: once that is committed, make sure the VM
    does not keep a status nobody will change. The operations correct it themselves when
    they ran (``restores_state_on_failure``); this catches the jobs aborted while queued
    or before their operation started."""
    if instance.operation not in VM_STATE_OPERATIONS or instance.status not in (JobStatus.FAILURE, JobStatus.ABORTED):
        return
    if update_fields is not None and "status" not in update_fields:
        return
    from ovmweb.jobs.recovery import INTERRUPTED

    if instance.error == INTERRUPTED:
        return  # recovery sends job_interrupted, whose receiver re-reads at once
    vm_id, job_id = (instance.params or {}).get("vm_id"), instance.pk
    if vm_id is not None:
        transaction.on_commit(lambda: vm_reread_submit(vm_id=vm_id, after_job_id=job_id))


def vm_reread_submit(*, vm_id: int, after_job_id: int | None = None, user=None) -> Job | None:
    """Queue a ``vm.reread`` job (the worker asks the VM's server for its real state) if
    the VM still shows a promised status; None when there is nothing to correct or another
    job holds the VM (that job sets the status itself)."""
    with transaction.atomic():
        vm = VirtualMachine.objects.filter(pk=vm_id, status__in=_PROMISED).first()
        if vm is None:
            return None
        try:
            with transaction.atomic():
                return job_submit(
                    operation="vm.reread",
                    user=user,
                    target=vm,
                    lock=[vm],
                    summary=_("Re-read the state of virtual machine %(vm)s") % {"vm": vm.name},
                    params={"vm_id": vm.pk, "after_job_id": after_job_id},
                )
        except LockConflict:
            return None
