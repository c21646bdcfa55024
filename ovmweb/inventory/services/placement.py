"""Where a VM runs: the choice of a server at start, and the checks on an explicit
target (start on a given server, live migration).

Rule 7.12 lives here: nothing is started or migrated onto a server with the
inbound migration lock, except an HA failover, which overrides it."""
from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Sum
from django.utils.translation import gettext as _

from ..choices import Architecture, DomainType, RepositoryKind, ServerStatus, VmStatus
from ..exceptions import Conflict
from ..models import Server, VirtualMachine

# VMs that occupy memory on their server.
_OCCUPYING = [VmStatus.STARTING, VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.SUSPENDED]


def _effective(vm: VirtualMachine, field: str):
    # A start applies the pending changes first: place the VM as it will boot.
    return (vm.pending_changes or {}).get(field, getattr(vm, field))


def _used_memory(server: Server, *, exclude_vm: VirtualMachine) -> int:
    used = (
        VirtualMachine.objects.filter(server=server, status__in=_OCCUPYING)
        .exclude(pk=exclude_vm.pk)
        .aggregate(total=Sum("memory_mib"))["total"]
    )
    return used or 0


_SAME = object()


def refusal(*, vm: VirtualMachine, server: Server, ha_failover: bool = False, repository=_SAME) -> str | None:
    """Why ``vm`` may not run on ``server``, or None. ``repository``: where its disks will be
    (a live migration with storage copies them into a repository of the target)."""
    if server.status != ServerStatus.RUNNING:
        return _("%(s)s is %(status)s") % {"s": server.name, "status": server.status}
    if vm.server_pool_id is None or server.server_pool_id != vm.server_pool_id:
        return _("%(s)s is not in the virtual machine's server pool") % {"s": server.name}
    if server.inbound_migration_lock and not ha_failover:
        return _("%(s)s has the inbound migration lock set") % {"s": server.name}
    pool = server.server_pool
    if pool is not None:
        sparc_pool = pool.architecture == Architecture.SPARC
        if sparc_pool != (_effective(vm, "domain_type") == DomainType.SPARC):
            return _("%(s)s cannot run domain type %(t)s") % {"s": server.name, "t": _effective(vm, "domain_type")}
    repo = vm.repository if repository is _SAME else repository
    if repo is not None:
        if repo.kind == RepositoryKind.LOCAL and repo.server_id != server.pk:
            return _("repository %(r)s is local to another server") % {"r": repo.name}
        if repo.kind == RepositoryKind.SHARED and not repo.server_pools.filter(pk=server.server_pool_id).exists():
            return _("repository %(r)s is not presented to the server pool of %(s)s") % {"r": repo.name, "s": server.name}
    need = _effective(vm, "memory_mib")
    free = server.memory_mib - _used_memory(server, exclude_vm=vm)
    if free < need:
        return _("%(s)s has %(free)d MiB free, the VM needs %(need)d MiB") % {"s": server.name, "free": max(free, 0), "need": need}
    # Anti-affinity: never two running members of one group on the same server.
    groups = list(vm.anti_affinity_groups.values_list("pk", flat=True))
    if groups:
        clash = (
            VirtualMachine.objects.filter(server=server, status__in=_OCCUPYING, anti_affinity_groups__in=groups)
            .exclude(pk=vm.pk)
            .first()
        )
        if clash is not None:
            return _("%(other)s of the same anti-affinity group runs on %(s)s") % {"other": clash.name, "s": server.name}
    return None


def check_server(*, vm: VirtualMachine, server: Server, ha_failover: bool = False, repository=_SAME) -> Server:
    reason = refusal(vm=vm, server=server, ha_failover=ha_failover, repository=repository)
    if reason:
        raise Conflict(_("Cannot place '%(vm)s' on %(s)s: %(reason)s.") % {"vm": vm.name, "s": server.name, "reason": reason})
    return server


def choose_server(*, vm: VirtualMachine, exclude: Iterable[Server] = (), ha_failover: bool = False) -> Server:
    """The eligible server of the VM's pool with the most free memory; Conflict with the reasons otherwise."""
    if vm.server_pool_id is None:
        raise Conflict(_("'%(vm)s' is in no server pool; migrate it to a pool first.") % {"vm": vm.name})
    excluded = [s.pk for s in exclude]
    candidates = list(
        Server.objects.filter(server_pool_id=vm.server_pool_id).exclude(pk__in=excluded).select_related("server_pool")
    )
    reasons, eligible = [], []
    for server in candidates:
        why = refusal(vm=vm, server=server, ha_failover=ha_failover)
        if why:
            reasons.append(why)
        else:
            eligible.append((server.memory_mib - _used_memory(server, exclude_vm=vm), server.name, server))
    if not eligible:
        detail = "; ".join(reasons) if reasons else _("the pool has no servers")
        raise Conflict(_("No server can run '%(vm)s': %(detail)s.") % {"vm": vm.name, "detail": detail})
    eligible.sort(key=lambda item: (-item[0], item[1]))
    return eligible[0][2]


__all__ = ["choose_server", "check_server", "refusal"]
