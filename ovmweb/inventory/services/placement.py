"""Where a VM runs: the choice of a server at start, and the checks on an explicit
target (start on a given server, live migration).

Rule 7.12 lives here: nothing is started or migrated onto a server with the
inbound migration lock, except an HA failover, which overrides it. So does 7.15:
VMs with different HugePages settings do not share a server, except after an HA
failover, which takes precedence. A server in MAINTENANCE (like any server that is
not RUNNING) takes no VM at all.

Every fact a decision needs about a server (memory its VMs occupy, whether the
VM's repository reaches it, a running anti-affinity partner) is annotated onto
the server rows by one query, whatever the number of servers in the pool."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

from ..choices import Architecture, DomainType, RepositoryKind, ServerStatus, VmStatus
from ..models import AntiAffinityGroup, Repository, Server, ServerPool, VirtualMachine

# VMs that occupy memory on their server.
_OCCUPYING = [VmStatus.STARTING, VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.SUSPENDED]
_FACTS = ("used_memory", "pool_architecture", "repository_presented", "anti_affinity_clash", "huge_pages_clash")


def _effective(vm: VirtualMachine, field: str):
    # A start applies the pending changes first: place the VM as it will boot.
    return (vm.pending_changes or {}).get(field, getattr(vm, field))


_SAME = object()


def _with_facts(*, vm: VirtualMachine, repository, where: str, params: list[Any]) -> list[Server]:
    """The servers matching ``where`` (SQL on server ``s``), each with the facts ``_reason``
    needs as attributes, read by ONE query.

    Plain SQL on purpose: it runs for every VM start, and the equivalent ORM query
    (correlated subqueries) costs ~4 ms of CPU to build and compile against 0.4 ms
    to run; the rules themselves stay in Python, in ``_reason``."""
    q = connection.ops.quote_name
    vm_table, server_table = q(VirtualMachine._meta.db_table), q(Server._meta.db_table)
    pool_table = q(ServerPool._meta.db_table)
    presented = Repository.server_pools.through._meta
    members = AntiAffinityGroup.vms.through._meta
    member_table, member_vm = q(members.db_table), q(members.get_field("virtualmachine").column)
    member_group = q(members.get_field("antiaffinitygroup").column)
    occupying = ", ".join(["%s"] * len(_OCCUPYING))
    # Other VMs occupying memory on server s (not the VM being placed: it may show STARTING there already).
    others = f"o.{q('server_id')} = s.{q('id')} AND o.{q('status')} IN ({occupying}) AND o.{q('id')} <> %s"
    sql_params: list[Any] = [*_OCCUPYING, vm.pk or 0]
    if repository is not None and repository.kind == RepositoryKind.SHARED:
        presented_sql = (
            f"EXISTS (SELECT 1 FROM {q(presented.db_table)} r WHERE r.{q(presented.get_field('repository').column)} = %s "  # nosec B608  # identifiers from model _meta through quote_name, every value a bound %s
            f"AND r.{q(presented.get_field('serverpool').column)} = s.{q('server_pool_id')})"
        )
        presented_params: list[Any] = [repository.pk]
    else:
        presented_sql, presented_params = "1 = 1", []
    # Anti-affinity: the first running member of one of the VM's groups on server s.
    clash_sql = (
        f"(SELECT o.{q('name')} FROM {vm_table} o JOIN {member_table} m ON m.{member_vm} = o.{q('id')} "  # nosec B608  # identifiers from model _meta through quote_name, every value a bound %s
        f"WHERE {others} AND m.{member_group} IN "
        f"(SELECT g.{member_group} FROM {member_table} g WHERE g.{member_vm} = %s) "
        f"ORDER BY o.{q('name')} LIMIT 1)"
    )
    # HugePages (7.15): the first VM occupying server s with the other setting.
    huge_sql = (
        f"(SELECT o.{q('name')} FROM {vm_table} o WHERE {others} AND o.{q('huge_pages')} <> %s "  # nosec B608  # identifiers from model _meta through quote_name, every value a bound %s
        f"ORDER BY o.{q('name')} LIMIT 1)"
    )
    sql = (
        f"SELECT s.*, "  # nosec B608  # identifiers from model _meta through quote_name, every value a bound %s
        f"COALESCE((SELECT SUM(o.{q('memory_mib')}) FROM {vm_table} o WHERE {others}), 0) AS used_memory, "
        f"p.{q('architecture')} AS pool_architecture, "
        f"{presented_sql} AS repository_presented, "
        f"{clash_sql} AS anti_affinity_clash, "
        f"{huge_sql} AS huge_pages_clash "
        f"FROM {server_table} s LEFT JOIN {pool_table} p ON p.{q('id')} = s.{q('server_pool_id')} "
        f"WHERE {where} ORDER BY s.{q('name')}"
    )
    huge = bool(_effective(vm, "huge_pages"))
    all_params = [*sql_params, *presented_params, *sql_params, vm.pk or 0, *sql_params, huge, *params]
    return list(Server.objects.raw(sql, all_params))


def _reason(*, vm: VirtualMachine, server: Server, facts: dict[str, Any], ha_failover: bool, repo) -> str | None:
    """Why ``vm`` may not run on ``server``, or None: the first refusal, in this order."""
    return (
        _server_refusal(vm=vm, server=server, ha_failover=ha_failover)
        or _architecture_refusal(vm=vm, server=server, facts=facts)
        or _repository_refusal(server=server, facts=facts, repo=repo)
        or _memory_refusal(vm=vm, server=server, facts=facts)
        or _anti_affinity_refusal(server=server, facts=facts)
        or _huge_pages_refusal(vm=vm, server=server, facts=facts, ha_failover=ha_failover)
    )


def _server_refusal(*, vm: VirtualMachine, server: Server, ha_failover: bool) -> str | None:
    if server.status != ServerStatus.RUNNING:
        return _("%(s)s is %(status)s") % {"s": server.name, "status": server.status}
    if vm.server_pool_id is None or server.server_pool_id != vm.server_pool_id:
        return _("%(s)s is not in the virtual machine's server pool") % {"s": server.name}
    if server.inbound_migration_lock and not ha_failover:
        return _("%(s)s has the inbound migration lock set") % {"s": server.name}
    return None


def _architecture_refusal(*, vm: VirtualMachine, server: Server, facts: dict[str, Any]) -> str | None:
    if facts["pool_architecture"] is not None:
        sparc_pool = facts["pool_architecture"] == Architecture.SPARC
        if sparc_pool != (_effective(vm, "domain_type") == DomainType.SPARC):
            return _("%(s)s cannot run domain type %(t)s") % {"s": server.name, "t": _effective(vm, "domain_type")}
    return None


def _repository_refusal(*, server: Server, facts: dict[str, Any], repo) -> str | None:
    if repo is None:
        return None
    if repo.kind == RepositoryKind.LOCAL and repo.server_id != server.pk:
        return _("repository %(r)s is local to another server") % {"r": repo.name}
    if repo.kind == RepositoryKind.SHARED and not facts["repository_presented"]:
        return _("repository %(r)s is not presented to the server pool of %(s)s") % {
            "r": repo.name,
            "s": server.name,
        }
    return None


def _memory_refusal(*, vm: VirtualMachine, server: Server, facts: dict[str, Any]) -> str | None:
    need = _effective(vm, "memory_mib")
    free = server.memory_mib - facts["used_memory"]
    if free < need:
        return _("%(s)s has %(free)d MiB free, the VM needs %(need)d MiB") % {
            "s": server.name,
            "free": max(free, 0),
            "need": need,
        }
    return None


def _anti_affinity_refusal(*, server: Server, facts: dict[str, Any]) -> str | None:
    if facts["anti_affinity_clash"] is not None:
        return _("%(other)s of the same anti-affinity group runs on %(s)s") % {
            "other": facts["anti_affinity_clash"],
            "s": server.name,
        }
    return None


def _huge_pages_refusal(*, vm: VirtualMachine, server: Server, facts: dict[str, Any], ha_failover: bool) -> str | None:
    if facts["huge_pages_clash"] is not None and not ha_failover:
        return _("%(other)s runs on %(s)s with HugePages %(setting)s") % {
            "other": facts["huge_pages_clash"],
            "s": server.name,
            "setting": _("off") if _effective(vm, "huge_pages") else _("on"),
        }
    return None


def refusal(*, vm: VirtualMachine, server: Server, ha_failover: bool = False, repository=_SAME) -> str | None:
    """Why ``vm`` may not run on ``server``, or None. ``repository``: where its disks will be
    (a live migration with storage copies them into a repository of the target)."""
    repo = vm.repository if repository is _SAME else repository
    rows = _with_facts(vm=vm, repository=repo, where=f"s.{connection.ops.quote_name('id')} = %s", params=[server.pk])
    if not rows:
        return _("%(s)s no longer exists") % {"s": server.name}
    facts = {name: getattr(rows[0], name) for name in _FACTS}
    return _reason(vm=vm, server=server, facts=facts, ha_failover=ha_failover, repo=repo)


def check_server(*, vm: VirtualMachine, server: Server, ha_failover: bool = False, repository=_SAME) -> Server:
    reason = refusal(vm=vm, server=server, ha_failover=ha_failover, repository=repository)
    if reason:
        raise Conflict(
            _("Cannot place '%(vm)s' on %(s)s: %(reason)s.") % {"vm": vm.name, "s": server.name, "reason": reason}
        )
    return server


def choose_server(*, vm: VirtualMachine, exclude: Iterable[Server] = (), ha_failover: bool = False) -> Server:
    """The eligible server of the VM's pool with the most free memory; Conflict with the reasons otherwise."""
    if vm.server_pool_id is None:
        raise Conflict(_("'%(vm)s' is in no server pool; migrate it to a pool first.") % {"vm": vm.name})
    excluded = {s.pk for s in exclude}
    repo = vm.repository
    pool_column = connection.ops.quote_name("server_pool_id")
    candidates = _with_facts(vm=vm, repository=repo, where=f"s.{pool_column} = %s", params=[vm.server_pool_id])
    reasons, eligible = [], []
    for server in candidates:
        if server.pk in excluded:
            continue
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
