"""A stats source that makes up readings: the sampler's input without a hypervisor."""

from __future__ import annotations

from ovmweb.hypervisor.base import DomainStats, HostStats, PoolUsage, ServerStats

GIB = 1024**3


class FakeSource:
    """Readings per server id; ``advance`` moves every counter on by one period of load."""

    def __init__(self):
        self.domains: dict[int, list[DomainStats]] = {}
        self.hosts: dict[int, HostStats] = {}
        self.pools: dict[str, PoolUsage] = {}
        self.calls: list[tuple[int, list[str]]] = []

    def __call__(self, server, pools):
        self.calls.append((server.pk, list(pools)))
        return ServerStats(
            host=self.hosts.get(server.pk) or host(),
            domains=list(self.domains.get(server.pk, [])),
            pools={name: self.pools[name] for name in pools if name in self.pools},
        )


def host(busy=0, total=0, free_kib=8 * 1024 * 1024, total_kib=16 * 1024 * 1024) -> HostStats:
    return HostStats(cpu_busy_ns=busy, cpu_total_ns=total, memory_total_kib=total_kib, memory_free_kib=free_kib)


def domain(uuid, *, cpu_ns=0, vcpus=1, rd=0, wr=0, rx=0, tx=0, ops=0) -> DomainStats:
    return DomainStats(
        uuid=str(uuid),
        cpu_time_ns=cpu_ns,
        vcpus=vcpus,
        memory_actual_kib=512 * 1024,
        memory_available_kib=500 * 1024,
        memory_unused_kib=100 * 1024,
        disk_read_bytes=rd,
        disk_write_bytes=wr,
        disk_read_ops=ops,
        disk_write_ops=ops,
        net_rx_bytes=rx,
        net_tx_bytes=tx,
    )


def usage(capacity=100 * GIB, free=50 * GIB) -> PoolUsage:
    return PoolUsage(capacity_bytes=capacity, allocation_bytes=capacity - free, available_bytes=free)
