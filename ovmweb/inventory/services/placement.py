"""Where a VM runs: the choice of a server at start, and the checks on an explicit
target (start on a given server, live migration).

Rule 7.12 lives here: nothing is started or migrated onto a server with the
inbound migration lock, except an HA failover, which overrides it.

Every fact a decision needs about a server (memory its VMs occupy, whether the
VM's repository reaches it, a running anti-affinity partner) is annotated onto
the server rows by one query, whatever the number of servers in the pool."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.utils.translation import gettext as _

from ..choices import Architecture, DomainType, RepositoryKind, ServerStatus, VmStatus
from ..exceptions import Conflict
from ..models import AntiAffinityGroup, Repository, Server, VirtualMachine

# VMs that occupy memory on their server.
_OCCUPYING = [VmStatus.STARTING, VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.SUSPENDED]
_FACTS = ("used_memory", "pool_architecture", "repository_presented", "anti_affinity_clash")


def _effective(vm: VirtualMachine, field: str):
    # A start applies the pending changes first: place the VM as it will boot.
    return (vm.pending_changes or {}).get(field, getattr(vm, field))


_SAME = object()


def _with_facts(servers: QuerySet, *, vm: VirtualMachine, repository) -> QuerySet:
    """``servers`` annotated with what ``_reason`` needs, as correlated subqueries (one query)."""
    others = VirtualMachine.objects.filter(server=OuterRef("pk"), status__in=_OCCUPYING).exclude(pk=vm.pk).order_by()
    used = others.values("server").annotate(total=Sum("memory_mib")).values("total")[:1]
    facts: dict[str, Any] = {
        "used_memory": Coalesce(Subquery(used, output_field=IntegerField()), 0),
        "pool_architecture": F("server_pool__architecture"),
    }
    if repository is not None and repository.kind == RepositoryKind.SHARED:
        presented = Repository.server_pools.through.objects.filter(
            repository_id=repository.pk, serverpool_id=OuterRef("server_pool_id")
        )
        facts["repository_presented"] = Exists(presented)
    else:
        facts["repository_presented"] = Value(True)
    if vm.pk is not None:
        # Anti-affinity: never two running members of one group on the same server.
        groups = AntiAffinityGroup.objects.filter(vms=vm).values("pk")
        clash = others.filter(anti_affinity_groups__in=groups).order_by("name").values("name")[:1]
        facts["anti_affinity_clash"] = Subquery(clash)
    else:
        facts["anti_affinity_clash"] = Value(None)
    return servers.annotate(**facts)


def _reason(*, vm: VirtualMachine, server: Server, facts: dict[str, Any], ha_failover: bool, repo) -> str | None:
    if server.status != ServerStatus.RUNNING:
        return _("%(s)s is %(status)s") % {"s": server.name, "status": server.status}
    if vm.server_pool_id is None or server.server_pool_id != vm.server_pool_id:
        return _("%(s)s is not in the virtual machine's server pool") % {"s": server.name}
    if server.inbound_migration_lock and not ha_failover:
        return _("%(s)s has the inbound migration lock set") % {"s": server.name}
    if facts["pool_architecture"] is not None:
        sparc_pool = facts["pool_architecture"] == Architecture.SPARC
        if sparc_pool != (_effective(vm, "domain_type") == DomainType.SPARC):
            return _("%(s)s cannot run domain type %(t)s") % {"s": server.name, "t": _effective(vm, "domain_type")}
    if repo is not None:
        if repo.kind == RepositoryKind.LOCAL and repo.server_id != server.pk:
            return _("repository %(r)s is local to another server") % {"r": repo.name}
        if repo.kind == RepositoryKind.SHARED and not facts["repository_presented"]:
            return _("repository %(r)s is not presented to the server pool of %(s)s") % {"r": repo.name, "s": server.name}
    need = _effective(vm, "memory_mib")
    free = server.memory_mib - facts["used_memory"]
    if free < need:
        return _("%(s)s has %(free)d MiB free, the VM needs %(need)d MiB") % {"s": server.name, "free": max(free, 0), "need": need}
    if facts["anti_affinity_clash"] is not None:
        return _("%(other)s of the same anti-affinity group runs on %(s)s") % {
            "other": facts["anti_affinity_clash"], "s": server.name}
    return None


def refusal(*, vm: VirtualMachine, server: Server, ha_failover: bool = False, repository=_SAME) -> str | None:
    """Why ``vm`` may not run on ``server``, or None. ``repository``: where its disks will be
    (a live migration with storage copies them into a repository of the target)."""
    repo = vm.repository if repository is _SAME else repository
    facts = _with_facts(Server.objects.filter(pk=server.pk), vm=vm, repository=repo).values(*_FACTS).first()
    if facts is None:
        return _("%(s)s no longer exists") % {"s": server.name}
    return _reason(vm=vm, server=server, facts=facts, ha_failover=ha_failover, repo=repo)


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
    repo = vm.repository
    candidates = _with_facts(
        Server.objects.filter(server_pool_id=vm.server_pool_id).exclude(pk__in=excluded), vm=vm, repository=repo
    )
    reasons, eligible = [], []
    for server in candidates:
        facts = {name: getattr(server, name) for name in _FACTS}
        why = _reason(vm=vm, server=server, facts=facts, ha_failover=ha_failover, repo=repo)
        if why:
            reasons.append(why)
        else:
            eligible.append((server.memory_mib - server.used_memory, server.name, server))
    if not eligible:
        detail = "; ".join(reasons) if reasons else _("the pool has no servers")
        raise Conflict(_("No server can run '%(vm)s': %(detail)s.") % {"vm": vm.name, "detail": detail})
    eligible.sort(key=lambda item: (-item[0], item[1]))
    return eligible[0][2]


__all__ = ["choose_server", "check_server", "refusal"]
