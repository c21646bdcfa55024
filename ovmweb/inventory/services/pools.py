"""Server pools, anti-affinity groups and processor compatibility groups.

Rules kept here (and only here):
- a server pool that still has servers, virtual machines or repositories
  presented to it cannot be deleted; its architecture cannot change while it
  has servers or virtual machines (an x86 VM cannot run on SPARC);
- an anti-affinity group belongs to one server pool and only holds VMs of
  that pool (seed 7.7 placement: its VMs never share a server);
- the servers of a processor compatibility group share one CPU vendor (seed
  6.14/7.11: live migration only between compatible processors);
- HA is enabled only in a pool whose servers all hold disk leases (libvirt's
  lockd): without them an HA restart could run a second guest on a disk the
  first still writes (``ha_refusal``);
- pool policies (DRS, DPM) are set through ``server_pool_set_policies`` only.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.inventory.models import AntiAffinityGroup, ProcessorCompatibilityGroup, Server, ServerPool, VirtualMachine
from ovmweb.jobs.services import event_record

_POOL_FIELDS = {"name", "architecture", "description"}


def _check_fields(changes: dict, allowed: set[str]) -> None:
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise ValidationError({name: _("This field cannot be changed here.") for name in unknown})


# --------------------------------------------------------------------- server pools


def ha_refusal(pool: ServerPool | None) -> str | None:
    """Why a VM of ``pool`` may not have HA enabled (or restarted by HA), or None.

    The pool's servers must all run libvirt's lock manager (``Server.disk_leases``, read
    at discovery): the lease is what stops a restarted guest from opening a disk that
    the first guest, on a server merely cut off, still writes."""
    if pool is None:
        return _("the virtual machine is in no server pool")
    lacking = sorted(pool.servers.filter(disk_leases=False).values_list("name", flat=True))
    if lacking:
        return _(
            "servers of pool %(pool)s have no disk leases (libvirt lockd + virtlockd): %(servers)s; "
            "an HA restart there could run a disk twice"
        ) % {"pool": pool.name, "servers": ", ".join(lacking[:10])}
    return None


def check_ha_allowed(*, pool: ServerPool | None, vm_name: str = "") -> None:
    reason = ha_refusal(pool)
    if reason:
        raise Conflict(
            _("Cannot enable HA for %(vm)s: %(reason)s.") % {"vm": vm_name or _("this VM"), "reason": reason}
        )


_POLICY_FIELDS = {"drs_enabled", "drs_threshold_percent", "drs_period_s", "dpm_enabled"}


@transaction.atomic
def server_pool_set_policies(*, pool: ServerPool, user, **policies) -> ServerPool:
    """DRS (threshold in percent of CPU load or memory, and the period a server must stay
    above it) and DPM (report only) for ``pool``; the monitor applies them."""
    _check_fields(policies, _POLICY_FIELDS)
    pool = ServerPool.objects.select_for_update().get(pk=pool.pk)
    for field, value in policies.items():
        setattr(pool, field, value)
    pool.full_clean()
    pool.save()
    on, off = _("on"), _("off")
    event_record(
        obj=pool,
        type="pool.policies",
        user=user,
        text=_("Policies of server pool %(name)s: DRS %(drs)s (%(t)s%% for %(p)s s), DPM %(dpm)s.")
        % {
            "name": pool.name,
            "drs": on if pool.drs_enabled else off,
            "t": pool.drs_threshold_percent,
            "p": pool.drs_period_s,
            "dpm": on if pool.dpm_enabled else off,
        },
    )
    return pool


@transaction.atomic
def server_pool_create(*, user, name: str, architecture: str = "X86", description: str = "") -> ServerPool:
    pool = ServerPool(name=name, architecture=architecture, description=description)
    pool.full_clean()
    pool.save()
    event_record(
        obj=pool, type="pool.created", text=_("Server pool %(name)s created.") % {"name": pool.name}, user=user
    )
    return pool


@transaction.atomic
def server_pool_update(*, pool: ServerPool, user, **changes) -> ServerPool:
    _check_fields(changes, _POOL_FIELDS)
    pool = ServerPool.objects.select_for_update().get(pk=pool.pk)
    new_arch = changes.get("architecture", pool.architecture)
    if new_arch != pool.architecture and (pool.servers.exists() or pool.vms.exists()):
        raise Conflict(
            _("Cannot change the architecture of server pool '%(name)s' while it has servers or virtual machines.")
            % {"name": pool.name}
        )
    for field, value in changes.items():
        setattr(pool, field, value)
    pool.full_clean()
    pool.save()
    event_record(
        obj=pool, type="pool.updated", text=_("Server pool %(name)s updated.") % {"name": pool.name}, user=user
    )
    return pool


@transaction.atomic
def server_pool_delete(*, pool: ServerPool, user) -> None:
    pool = ServerPool.objects.select_for_update().get(pk=pool.pk)
    blockers = []
    if pool.servers.exists():
        blockers.append(_("servers"))
    if pool.vms.exists():
        blockers.append(_("virtual machines"))
    if pool.repositories.exists():
        blockers.append(_("repositories presented to it"))
    if blockers:
        raise Conflict(
            _("Cannot delete server pool '%(name)s': it still has %(what)s.")
            % {"name": pool.name, "what": ", ".join(str(b) for b in blockers)}
        )
    event_record(
        obj=pool, type="pool.deleted", text=_("Server pool %(name)s deleted.") % {"name": pool.name}, user=user
    )
    pool.delete()


# --------------------------------------------------------------------- anti-affinity groups


def _check_group_vms(*, pool: ServerPool, vms: Iterable[VirtualMachine]) -> None:
    strangers = sorted(vm.name for vm in vms if vm.server_pool_id != pool.pk)
    if strangers:
        raise ValidationError(
            {
                "vms": _(
                    "Only virtual machines of server pool '%(pool)s' can join its anti-affinity group; not: %(vms)s."
                )
                % {"pool": pool.name, "vms": ", ".join(strangers)}
            }
        )


def _check_group_name(*, pool: ServerPool, name: str, exclude_pk: int | None = None) -> None:
    clash = AntiAffinityGroup.objects.filter(server_pool=pool, name=name).exclude(pk=exclude_pk)
    if clash.exists():
        raise ValidationError(
            {
                "name": _("Server pool '%(pool)s' already has an anti-affinity group named '%(name)s'.")
                % {"pool": pool.name, "name": name}
            }
        )


@transaction.atomic
def anti_affinity_group_create(
    *, user, server_pool: ServerPool, name: str, vms: Iterable[VirtualMachine] = ()
) -> AntiAffinityGroup:
    vms = list(vms)
    _check_group_name(pool=server_pool, name=name)
    _check_group_vms(pool=server_pool, vms=vms)
    group = AntiAffinityGroup(server_pool=server_pool, name=name)
    group.full_clean()
    group.save()
    group.vms.set(vms)
    event_record(
        obj=group, type="aag.created", text=_("Anti-affinity group %(name)s created.") % {"name": name}, user=user
    )
    return group


@transaction.atomic
def anti_affinity_group_update(
    *,
    group: AntiAffinityGroup,
    user,
    name: str | None = None,
    server_pool: ServerPool | None = None,
    vms: Iterable[VirtualMachine] | None = None,
) -> AntiAffinityGroup:
    group = AntiAffinityGroup.objects.select_for_update().get(pk=group.pk)
    if server_pool is not None and server_pool.pk != group.server_pool_id:
        raise ValidationError({"server_pool": _("An anti-affinity group cannot move to another server pool.")})
    if name is not None:
        _check_group_name(pool=group.server_pool, name=name, exclude_pk=group.pk)
        group.name = name
    group.full_clean()
    group.save()
    if vms is not None:
        vms = list(vms)
        _check_group_vms(pool=group.server_pool, vms=vms)
        group.vms.set(vms)
    event_record(
        obj=group, type="aag.updated", text=_("Anti-affinity group %(name)s updated.") % {"name": group.name}, user=user
    )
    return group


@transaction.atomic
def anti_affinity_group_delete(*, group: AntiAffinityGroup, user) -> None:
    event_record(
        obj=group, type="aag.deleted", text=_("Anti-affinity group %(name)s deleted.") % {"name": group.name}, user=user
    )
    group.delete()


# --------------------------------------------------------------------- processor compatibility groups


def _check_compatible(servers: list[Server]) -> None:
    vendors = {s.cpu_vendor for s in servers if s.cpu_vendor}
    if len(vendors) > 1:
        raise ValidationError(
            {
                "servers": _("Servers of one processor compatibility group must share a CPU vendor; found: %(v)s.")
                % {"v": ", ".join(sorted(vendors))}
            }
        )


@transaction.atomic
def compatibility_group_create(
    *, user, name: str, description: str = "", servers: Iterable[Server] = ()
) -> ProcessorCompatibilityGroup:
    servers = list(servers)
    _check_compatible(servers)
    group = ProcessorCompatibilityGroup(name=name, description=description)
    group.full_clean()
    group.save()
    if servers:
        Server.objects.filter(pk__in=[s.pk for s in servers]).update(compatibility_group=group)
    event_record(
        obj=group,
        type="compat.created",
        text=_("Processor compatibility group %(name)s created.") % {"name": name},
        user=user,
    )
    return group


@transaction.atomic
def compatibility_group_update(
    *,
    group: ProcessorCompatibilityGroup,
    user,
    name: str | None = None,
    description: str | None = None,
    servers: Iterable[Server] | None = None,
) -> ProcessorCompatibilityGroup:
    group = ProcessorCompatibilityGroup.objects.select_for_update().get(pk=group.pk)
    if name is not None:
        group.name = name
    if description is not None:
        group.description = description
    group.full_clean()
    group.save()
    if servers is not None:
        servers = list(servers)
        _check_compatible(servers)
        group.servers.exclude(pk__in=[s.pk for s in servers]).update(compatibility_group=None)
        Server.objects.filter(pk__in=[s.pk for s in servers]).update(compatibility_group=group)
    event_record(
        obj=group,
        type="compat.updated",
        text=_("Processor compatibility group %(name)s updated.") % {"name": group.name},
        user=user,
    )
    return group


@transaction.atomic
def compatibility_group_delete(*, group: ProcessorCompatibilityGroup, user) -> None:
    if group.servers.exists():
        raise Conflict(
            _("Cannot delete processor compatibility group '%(name)s': servers still belong to it.")
            % {"name": group.name}
        )
    event_record(
        obj=group,
        type="compat.deleted",
        text=_("Processor compatibility group %(name)s deleted.") % {"name": group.name},
        user=user,
    )
    group.delete()
