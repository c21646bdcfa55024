"""The sampler: once per ``OVMWEB_METRICS_INTERVAL`` the monitor hands it the servers that
answered this round, and it reads each with one driver call (``Driver.stats``: libvirt's
bulk domain stats, the host, the pools of the repositories this server is asked about).

Counters (CPU time, bytes, operations) become rates against the previous reading of the
same object, kept in memory: the first reading after a start gives none. Then one round
is stored (``Store``), the thresholds are checked and the browsers told (topics
``metrics.vm``, ``metrics.server``, ``metrics.repository`` of the live feed: only the
time, the pages fetch what they show).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from django.conf import settings

from ovmweb.errors import DriverError
from ovmweb.hypervisor.base import DomainStats, HostStats, PoolUsage, ServerStats
from ovmweb.jobs.live import publish

from . import series, thresholds
from .models import Alarm, Sample
from .store import Store, Values

log = logging.getLogger(__name__)

Source = Callable[[object, list[str]], ServerStats]
PURGE_EVERY = 3600.0  # seconds between purges of the rows of deleted objects
_COUNTERS = (
    ("disk_rd", "disk_read_bytes"),
    ("disk_wr", "disk_write_bytes"),
    ("disk_rd_ops", "disk_read_ops"),
    ("disk_wr_ops", "disk_write_ops"),
    ("net_rx", "net_rx_bytes"),
    ("net_tx", "net_tx_bytes"),
)


def driver_source(server, pools: list[str]) -> ServerStats:
    from ovmweb.hypervisor.connections import driver_for

    return driver_for(server).stats(pools)


def _kib(value: int | None) -> float | None:
    return float(value) * 1024 if value is not None else None


def _rate(now: int, before: int, elapsed: float) -> float | None:
    # A counter that went back belongs to a new run of the domain: no rate this time.
    return (now - before) / elapsed if now >= before else None


def vm_values(now: DomainStats, before: DomainStats | None, elapsed: float) -> Values:
    """A VM's series from its counters now and at the previous reading ``elapsed`` seconds ago."""
    used = None
    if now.memory_available_kib is not None and now.memory_unused_kib is not None:
        used = _kib(now.memory_available_kib - now.memory_unused_kib)
    values: Values = {"mem_actual": _kib(now.memory_actual_kib), "mem_used": used}
    if before is None or elapsed <= 0:
        return values
    for name, counter in _COUNTERS:
        values[name] = _rate(getattr(now, counter), getattr(before, counter), elapsed)
    if now.cpu_time_ns is not None and before.cpu_time_ns is not None:
        cpu = _rate(now.cpu_time_ns, before.cpu_time_ns, elapsed * 1e9 * max(now.vcpus, 1))
        values["cpu"] = min(cpu * 100, 100.0) if cpu is not None else None
    return values


def server_values(now: HostStats, before: HostStats | None, running: int) -> Values:
    values: Values = {
        "mem_free": _kib(now.memory_free_kib),
        "mem_total": _kib(now.memory_total_kib),
        "vm_count": float(running),
    }
    if before is not None and now.cpu_total_ns > before.cpu_total_ns:
        values["cpu"] = (now.cpu_busy_ns - before.cpu_busy_ns) * 100 / (now.cpu_total_ns - before.cpu_total_ns)
    return values


def repository_values(usage: PoolUsage) -> Values:
    return {
        "capacity": float(usage.capacity_bytes),
        "allocation": float(usage.allocation_bytes),
        "free": float(usage.available_bytes),
    }


def repository_plan(servers: list) -> dict[int, dict[str, object]]:
    """{server id: {root pool name: repository}}: each repository read once, on the first
    of its servers that answered this round."""
    from ovmweb.inventory.choices import RepositoryKind
    from ovmweb.inventory.models import Repository
    from ovmweb.inventory.services.repositories import pool_name

    by_pool: dict[int, list[int]] = {}
    for server in servers:
        if server.server_pool_id is not None:
            by_pool.setdefault(server.server_pool_id, []).append(server.pk)
    answered = {server.pk for server in servers}
    plan: dict[int, dict[str, object]] = {}
    for repository in Repository.objects.prefetch_related("server_pools"):
        if repository.kind == RepositoryKind.LOCAL:
            candidates = [repository.server_id] if repository.server_id in answered else []
        else:
            candidates = [pk for pool in repository.server_pools.all() for pk in by_pool.get(pool.pk, [])]
        if candidates:
            plan.setdefault(min(candidates), {})[pool_name(repository)] = repository
    return plan


class Round:
    """What one round read: {id: values} and {id: object} per kind."""

    def __init__(self, ts: int):
        self.ts = ts
        self.samples: dict[int, dict[int, Values]] = {kind: {} for kind in series.SERIES}
        self.objects: dict[int, dict[int, object]] = {kind: {} for kind in series.SERIES}

    def add(self, kind: int, obj, values: Values, object_id: int | None = None) -> None:
        pk = obj.pk if obj is not None else object_id
        self.samples[kind][pk] = values
        if obj is not None:
            self.objects[kind][pk] = obj


class Sampler:
    def __init__(
        self,
        *,
        source: Source = driver_source,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        interval: float | None = None,
    ):
        self.source = source
        self.store = store or Store()
        self.clock = clock
        self.interval = interval if interval is not None else settings.OVMWEB_METRICS_INTERVAL
        self._before: dict[tuple[int, object], tuple[float, object]] = {}  # (kind, key) -> (time, counters)
        self._last = float("-inf")
        self._purged = time.monotonic()

    def due(self) -> bool:
        # A little early is on time: the monitor's rounds jitter around the same period.
        return time.monotonic() - self._last >= self.interval * 0.9

    def sample(self, servers: Iterable) -> Round:
        """Read ``servers`` (those that answered the monitor this round), store, check, tell."""
        self._last = time.monotonic()
        servers = list(servers)
        now = self.clock()
        result = Round(int(now))
        plan = repository_plan(servers)
        for server in servers:
            try:
                stats = self.source(server, list(plan.get(server.pk, {})))
            except DriverError as exc:
                log.info("metrics: server %s not read: %s", server, exc)
                continue
            self._read_server(result, server, stats, now)
            for name, usage in stats.pools.items():
                result.add(series.REPOSITORY, plan[server.pk][name], repository_values(usage))
        self._store(result)
        if time.monotonic() - self._purged >= PURGE_EVERY:
            self.purge()
        return result

    def _elapsed(self, kind: int, key, counters, now: float):
        """(the previous counters of ``key``, seconds since), remembering these."""
        before = self._before.get((kind, key))
        self._before[(kind, key)] = (now, counters)
        return (before[1], now - before[0]) if before else (None, 0.0)

    def _read_server(self, result: Round, server, stats: ServerStats, now: float) -> None:
        from ovmweb.inventory.models import VirtualMachine

        before, _seconds = self._elapsed(series.SERVER, server.pk, stats.host, now)
        result.add(series.SERVER, server, server_values(stats.host, before, len(stats.domains)))
        vms = {
            str(uuid): pk for uuid, pk in VirtualMachine.objects.filter(server_id=server.pk).values_list("uuid", "pk")
        }
        for domain in stats.domains:
            pk = vms.get(domain.uuid)
            if pk is None:
                continue  # not one of ours, or arriving by migration: its server of record reads it
            before, elapsed = self._elapsed(series.VM, pk, domain, now)
            result.add(series.VM, None, vm_values(domain, before, elapsed), object_id=pk)

    def _store(self, result: Round) -> None:
        for kind, samples in result.samples.items():
            if samples:
                self.store.record(kind, result.ts, samples)
        for kind in (series.SERVER, series.REPOSITORY):
            thresholds.check(kind, result.samples[kind], result.objects[kind])
        for name, kind in series.KINDS.items():
            if result.samples[kind]:
                publish(f"metrics.{name}", {"ts": result.ts})

    def purge(self) -> int:
        """Delete the samples and alarms of objects that are gone; returns the rows deleted."""
        from ovmweb.inventory.models import Repository, Server, VirtualMachine

        self._purged = time.monotonic()
        deleted = 0
        for kind, model in ((series.VM, VirtualMachine), (series.SERVER, Server), (series.REPOSITORY, Repository)):
            ids = model.objects.values("pk")
            for table in (Sample, Alarm):
                deleted += table.objects.filter(kind=kind).exclude(object_id__in=ids).delete()[0]
            known = set(model.objects.values_list("pk", flat=True))
            gone = {key for (k, key) in self._before if k == kind and key not in known}
            for key in gone:
                del self._before[(kind, key)]
            self.store.forget(kind, gone)
        return deleted


_default: Sampler | None = None


def sample_round(*, servers: Iterable) -> Round | None:
    """The monitor's one call per round: sample ``servers`` if the interval has passed.
    Never raises: metrics must not stop the monitor's own work."""
    global _default
    if _default is None:
        _default = Sampler()
    if not _default.due():
        return None
    try:
        return _default.sample(servers)
    except Exception:  # the monitor outlives any failure of its metrics
        log.exception("metrics round failed")
        return None
