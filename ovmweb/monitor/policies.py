"""Server pool policies (seed 6.12), run by the monitor after each reconcile round.

DRS (``ServerPool.drs_enabled``, off by default): the monitor reads each running server's
CPU load and memory use from libvirt (``Driver.stats``: CPU counters, so the load is the
share of CPU time busy between two rounds). A server that stays above the pool's
``drs_threshold_percent`` (CPU or memory) for ``drs_period_s`` seconds has one VM
live-migrated away, with an event saying why; then it gets another full period. The VM is
one that fits elsewhere by the rules of ``maintenance.move_target`` (placement: memory,
anti-affinity, the inbound migration lock, which DRS never overrides; never a pinned VM,
7.16; never one whose disks are local), the largest such, and none while a migration of
the pool is under way.

DPM (``dpm_enabled``) only reports, as an event on the pool when the answer changes, which
servers could be emptied onto the others: powering a server off and on needs IPMI (or
another out-of-band controller), which ovmweb does not drive."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DriverError, LockConflict

log = logging.getLogger(__name__)

# (cpu percent or None before a second reading, memory percent)
Load = tuple[float | None, float]


class LibvirtLoad:
    """Each server's CPU load (between two readings) and memory use, from ``Driver.stats``."""

    def __init__(self) -> None:
        self._previous: dict[int, tuple[int, int]] = {}

    def __call__(self, server) -> Load | None:
        from ovmweb.hypervisor.connections import driver_for

        try:
            host = driver_for(server).stats(()).host
        except DriverError:
            return None
        before = self._previous.get(server.pk)
        self._previous[server.pk] = (host.cpu_busy_ns, host.cpu_total_ns)
        cpu = None
        if before is not None and host.cpu_total_ns > before[1]:
            cpu = 100.0 * (host.cpu_busy_ns - before[0]) / (host.cpu_total_ns - before[1])
        memory = 100.0 * (1 - host.memory_free_kib / host.memory_total_kib) if host.memory_total_kib else 0.0
        return cpu, memory


class PoolPolicies:
    def __init__(self, *, read: Callable[[object], Load | None] | None = None, clock=time.monotonic) -> None:
        self.read = read or LibvirtLoad()
        self.clock = clock
        self._above_since: dict[int, float] = {}
        self._dpm_reported: dict[int, tuple[str, ...]] = {}

    def step(self, servers: Iterable) -> None:
        """``servers``: those that answered this round."""
        from collections import defaultdict

        by_pool = defaultdict(list)
        for server in servers:
            if server.server_pool_id is not None and server.status == "RUNNING":
                by_pool[server.server_pool_id].append(server)
        if not by_pool:
            return
        from ovmweb.inventory.models import ServerPool

        for pool in ServerPool.objects.filter(pk__in=list(by_pool)).exclude(drs_enabled=False, dpm_enabled=False):
            try:
                if pool.drs_enabled:
                    self._drs(pool, by_pool[pool.pk])
                if pool.dpm_enabled:
                    self._dpm(pool)
            except Exception:  # one pool's policy must not stop the monitor
                log.exception("policies of pool %s failed", pool.pk)

    # ------------------------------------------------------------------ DRS
    def _drs(self, pool, servers: list) -> None:
        for server in servers:
            load = self.read(server)
            why = _over(load, pool.drs_threshold_percent) if load else None
            if why is None:
                self._above_since.pop(server.pk, None)
                continue
            since = self._above_since.setdefault(server.pk, self.clock())
            if self.clock() - since < pool.drs_period_s or _pool_migrating(pool):
                continue
            self._above_since[server.pk] = self.clock()  # a full period before the next move
            self._move_one(pool, server, why)

    def _move_one(self, pool, server, why: str) -> None:
        from ovmweb.inventory.services import maintenance
        from ovmweb.inventory.services.vm_migration import vm_migrate
        from ovmweb.jobs.services import event_record

        reasons = []
        for vm in sorted(maintenance.running_vms(server), key=lambda v: (-v.memory_mib, v.name)):
            target, refusal = maintenance.move_target(vm=vm, source=server)
            if target is None:
                reasons.append(f"{vm.name}: {refusal}")
                continue
            try:
                job = vm_migrate(vm=vm, user=None, target_server=target)
            except (Conflict, LockConflict) as exc:
                reasons.append(f"{vm.name}: {exc}")
                continue
            event_record(
                obj=vm,
                type="pool.drs",
                job=job,
                severity="WARNING",
                text=_(
                    "DRS of pool %(pool)s: migrating %(vm)s from %(s)s to %(t)s: %(why)s above the threshold of "
                    "%(th)d%% for %(p)d s."
                )
                % {
                    "pool": pool.name,
                    "vm": vm.name,
                    "s": server.name,
                    "t": target.name,
                    "why": why,
                    "th": pool.drs_threshold_percent,
                    "p": pool.drs_period_s,
                },
            )
            return
        event_record(
            obj=server,
            type="pool.drs",
            severity="WARNING",
            text=_("DRS of pool %(pool)s: %(s)s is over its threshold (%(why)s) but no VM can move: %(r)s")
            % {"pool": pool.name, "s": server.name, "why": why, "r": "; ".join(reasons) or _("no running VM")},
        )

    # ------------------------------------------------------------------ DPM
    def _dpm(self, pool) -> None:
        from ovmweb.jobs.services import event_record

        names = tuple(sorted(s.name for s in _could_be_emptied(pool)))
        if self._dpm_reported.get(pool.pk) == names:
            return
        self._dpm_reported[pool.pk] = names
        if names:
            text = _(
                "DPM of pool %(pool)s: %(servers)s could be emptied (their VMs fit on the other servers) and "
                "powered off. ovmweb does not power servers off or on: that needs IPMI."
            ) % {"pool": pool.name, "servers": ", ".join(names)}
        else:
            text = _("DPM of pool %(pool)s: no server could be emptied now.") % {"pool": pool.name}
        event_record(obj=pool, type="pool.dpm", text=text)


def _over(load: Load, threshold: int) -> str | None:
    cpu, memory = load
    if cpu is not None and cpu > threshold:
        return _("CPU load %(v).0f%%") % {"v": cpu}
    if memory > threshold:
        return _("memory use %(v).0f%%") % {"v": memory}
    return None


def _pool_migrating(pool) -> bool:
    from django.contrib.contenttypes.models import ContentType

    from ovmweb.inventory.models import VirtualMachine
    from ovmweb.jobs.models import Job

    vm_ids = VirtualMachine.objects.filter(server_pool=pool).values("pk")
    return Job.objects.filter(
        operation="vm.migrate",
        status__in=["QUEUED", "RUNNING"],
        target_type=ContentType.objects.get_for_model(VirtualMachine),
        target_id__in=vm_ids,
    ).exists()


def _could_be_emptied(pool) -> list:
    """Running servers of ``pool`` whose running VMs all fit, by memory, on the pool's other
    running servers (first fit, largest first), each judged alone."""
    from django.db.models import Q, Sum

    from ovmweb.inventory.models import Server

    occupying = ["STARTING", "RUNNING", "STOPPING", "SUSPENDED"]
    servers = list(
        Server.objects.filter(server_pool=pool, status="RUNNING").annotate(
            used=Sum("vms__memory_mib", filter=Q(vms__status__in=occupying))
        )
    )
    result = []
    for server in servers:
        others = {
            s.pk: s.memory_mib - (s.used or 0) for s in servers if s.pk != server.pk and not s.inbound_migration_lock
        }
        needs = sorted(server.vms.filter(status__in=occupying).values_list("memory_mib", flat=True), reverse=True)
        if not others:
            continue
        fits = True
        for need in needs:
            where = next((pk for pk, free in others.items() if free >= need), None)
            if where is None:
                fits = False
                break
            others[where] -= need
        if fits:
            result.append(server)
    return result


__all__ = ["LibvirtLoad", "PoolPolicies"]
