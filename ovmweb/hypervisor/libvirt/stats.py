"""Statistics: one reading of a server, its running domains and some storage pools.

The domains are read with libvirt's bulk call (``virConnectGetAllDomainStats``): one
round trip per server however many domains it runs, never one per domain. Plain data
out; what the numbers mean over time (rates, downsampling) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Collection

import libvirt

from ..base import DomainStats, HostStats, PoolUsage, ServerStats
from .connection import Connection, errors, translate

_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
_RUNNING = libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_RUNNING | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_PAUSED


def _sum(record: dict, group: str, field: str) -> int:
    """The sum of ``<group>.<i>.<field>`` over the ``<group>.count`` devices."""
    return sum(int(record.get(f"{group}.{i}.{field}", 0)) for i in range(int(record.get(f"{group}.count", 0))))


def _optional(record: dict, key: str) -> int | None:
    value = record.get(key)
    return int(value) if value is not None else None


def domain_stats(uuid: str, record: dict) -> DomainStats:
    """A ``DomainStats`` from one record of ``getAllDomainStats`` (the typed-parameter dict)."""
    return DomainStats(
        uuid=uuid,
        cpu_time_ns=_optional(record, "cpu.time"),
        vcpus=int(record.get("vcpu.current", 0)),
        memory_actual_kib=_optional(record, "balloon.current"),
        memory_unused_kib=_optional(record, "balloon.unused"),
        memory_available_kib=_optional(record, "balloon.available"),
        memory_rss_kib=_optional(record, "balloon.rss"),
        disk_read_bytes=_sum(record, "block", "rd.bytes"),
        disk_write_bytes=_sum(record, "block", "wr.bytes"),
        disk_read_ops=_sum(record, "block", "rd.reqs"),
        disk_write_ops=_sum(record, "block", "wr.reqs"),
        net_rx_bytes=_sum(record, "net", "rx.bytes"),
        net_tx_bytes=_sum(record, "net", "tx.bytes"),
    )


class StatsMixin(Connection):
    def stats(self, pools: Collection[str] = ()) -> ServerStats:
        with errors("reading domain statistics"):
            records = self._conn.getAllDomainStats(_GROUPS, _RUNNING)
            domains = [domain_stats(dom.UUIDString(), record) for dom, record in records]
        return ServerStats(host=self._host_stats(), domains=domains, pools=self._pool_usage(pools))

    def _host_stats(self) -> HostStats:
        with errors("reading host statistics"):
            cpu = self._conn.getCPUStats(libvirt.VIR_NODE_CPU_STATS_ALL_CPUS)
            total_mib = self._conn.getInfo()[1]
            try:
                memory = self._conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
                free_kib = sum(int(memory.get(k, 0)) for k in ("free", "buffers", "cached"))
            except libvirt.libvirtError:  # drivers without node memory stats (test://) still know free pages
                free_kib = self._conn.getFreeMemory() // 1024
        busy = int(cpu.get("user", 0)) + int(cpu.get("kernel", 0))
        return HostStats(
            cpu_busy_ns=busy,
            cpu_total_ns=busy + int(cpu.get("idle", 0)) + int(cpu.get("iowait", 0)),
            memory_total_kib=int(total_mib) * 1024,
            memory_free_kib=int(free_kib),
        )

    def _pool_usage(self, names: Collection[str]) -> dict[str, PoolUsage]:
        found: dict[str, PoolUsage] = {}
        for name in names:
            try:
                pool = self._conn.storagePoolLookupByName(name)
                if not pool.isActive():
                    continue
                pool.refresh(0)  # a directory pool's figures are those of its last refresh
                _state, capacity, allocation, available = pool.info()
            except libvirt.libvirtError as exc:
                if exc.get_error_code() in (libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_OPERATION_INVALID):
                    continue
                raise translate(exc, f"storage pool {name}") from exc
            found[name] = PoolUsage(capacity_bytes=capacity, allocation_bytes=allocation, available_bytes=available)
        return found
