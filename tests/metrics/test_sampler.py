"""The sampler: one stats call per server and round, counters into rates, repositories
read once on one of their servers, rows of deleted objects purged."""

import pytest

from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.hypervisor.libvirt.stats import domain_stats
from ovmweb.inventory import choices
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.metrics import series
from ovmweb.metrics.models import Sample
from ovmweb.metrics.sampler import Sampler, vm_values
from tests import factories as f

from .fakes import GIB, FakeSource, domain, host, usage

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def estate():
    pool = f.ServerPoolFactory()
    server = f.ServerFactory(server_pool=pool)
    repository = f.RepositoryFactory(server_pools=[pool])
    vms = [f.VirtualMachineFactory(server_pool=pool, server=server, status=choices.VmStatus.RUNNING) for _ in range(3)]
    return server, repository, vms


def test_one_call_per_server_and_rates_from_counters(estate):
    server, repository, vms = estate
    source, clock = FakeSource(), Clock()
    sampler = Sampler(source=source, clock=clock)
    source.domains[server.pk] = [domain(vm.uuid) for vm in vms]
    source.hosts[server.pk] = host(busy=0, total=0)
    source.pools[pool_name(repository)] = usage()
    sampler.sample([server])
    clock.now += 10
    # 10 s later: VM 0 used 5 s of its 2 vCPUs' 20 s, read 10 MB, received 1 MB.
    source.domains[server.pk] = [domain(vms[0].uuid, cpu_ns=5 * 10**9, vcpus=2, rd=10_000_000, rx=1_000_000, ops=50)]
    source.hosts[server.pk] = host(busy=3 * 10**9, total=12 * 10**9)
    result = sampler.sample([server])

    assert source.calls == [(server.pk, [pool_name(repository)])] * 2
    vm = result.samples[series.VM][vms[0].pk]
    assert vm["cpu"] == pytest.approx(25.0)
    assert (vm["disk_rd"], vm["disk_wr"], vm["net_rx"], vm["disk_rd_ops"]) == (1_000_000, 0, 100_000, 5)
    assert (vm["mem_actual"], vm["mem_used"]) == (512 * 1024 * 1024, 400 * 1024 * 1024)
    assert result.samples[series.SERVER][server.pk]["cpu"] == pytest.approx(25.0)
    assert result.samples[series.SERVER][server.pk]["vm_count"] == 1
    assert result.samples[series.REPOSITORY][repository.pk]["free"] == 50 * GIB
    stored = Sample.objects.get(kind=series.VM, object_id=vms[0].pk, tier=0, ts=int(clock.now))
    assert stored.cpu == pytest.approx(25.0)


def test_the_first_reading_and_a_restarted_domain_give_no_rate():
    first = vm_values(domain("u", cpu_ns=10**9, rd=100), None, 0.0)
    assert first.get("cpu") is None and first.get("disk_rd") is None and first["mem_actual"] is not None
    restarted = vm_values(domain("u", cpu_ns=10, rd=5), domain("u", cpu_ns=10**9, rd=100), 10.0)
    assert restarted["cpu"] is None and restarted["disk_rd"] is None


def test_domains_that_are_not_ours_are_left_out(estate):
    server, _repository, vms = estate
    source = FakeSource()
    source.domains[server.pk] = [domain(vms[0].uuid), domain("00000000-0000-0000-0000-00000000abcd")]
    result = Sampler(source=source, clock=Clock()).sample([server])
    assert list(result.samples[series.VM]) == [vms[0].pk]


def test_a_server_that_fails_is_skipped_and_the_others_are_read(estate):
    from ovmweb.errors import ConnectionFailed

    server, _repository, _vms = estate
    other = f.ServerFactory(server_pool=server.server_pool)
    source = FakeSource()

    def flaky(srv, pools):
        if srv.pk == server.pk:
            raise ConnectionFailed("gone")
        return source(srv, pools)

    result = Sampler(source=flaky, clock=Clock()).sample([server, other])
    assert list(result.samples[series.SERVER]) == [other.pk]


def test_rows_of_deleted_objects_are_purged(estate):
    server, _repository, vms = estate
    source = FakeSource()
    source.domains[server.pk] = [domain(vm.uuid) for vm in vms]
    sampler = Sampler(source=source, clock=Clock())
    sampler.sample([server])
    gone = vms[0].pk
    vms[0].delete()
    assert sampler.purge() == 1
    assert not Sample.objects.filter(kind=series.VM, object_id=gone).exists()
    assert Sample.objects.filter(kind=series.VM, object_id=vms[1].pk).exists()


def test_the_libvirt_driver_reads_test_default_in_one_bulk_call(monkeypatch):
    driver = LibvirtDriver("test:///default")
    calls = []
    real = driver._conn.getAllDomainStats
    monkeypatch.setattr(driver._conn, "getAllDomainStats", lambda *a: calls.append(a) or real(*a))
    try:
        stats = driver.stats(["default-pool", "no-such-pool"])
    finally:
        driver.close()
    assert len(calls) == 1
    assert [d.uuid for d in stats.domains] == ["6695eb01-f6a4-8304-79aa-97f2502e193f"]
    assert stats.host.memory_total_kib > 0 and stats.host.cpu_total_ns >= stats.host.cpu_busy_ns > 0
    assert list(stats.pools) == ["default-pool"] and stats.pools["default-pool"].capacity_bytes > 0


def test_a_bulk_stats_record_is_summed_over_devices():
    record = {
        "cpu.time": 7,
        "vcpu.current": 2,
        "balloon.current": 1024,
        "block.count": 2,
        "block.0.rd.bytes": 10,
        "block.1.rd.bytes": 5,
        "block.1.wr.reqs": 3,
        "net.count": 1,
        "net.0.tx.bytes": 9,
    }
    stats = domain_stats("u", record)
    assert (stats.cpu_time_ns, stats.vcpus, stats.memory_actual_kib) == (7, 2, 1024)
    assert (stats.disk_read_bytes, stats.disk_write_ops, stats.net_tx_bytes, stats.memory_unused_kib) == (
        15,
        3,
        9,
        None,
    )
