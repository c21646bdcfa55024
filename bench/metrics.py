"""Metrics sampling at scale: how long one round of the sampler takes for 10,000 running VMs.

Self-contained: a temporary SQLite database and var directory. Two parts:

1. 10,000 running VMs on 10 servers, read from a fake stats source (one call per server
   and round, as the libvirt driver's bulk call is), over 13 rounds 10 s apart on a
   simulated clock that crosses a 10-minute boundary, so the timed rounds include the
   worst one (every coarser tier's means written too). Each round is timed end to end:
   the reading, rates, the upserts of every tier, the thresholds, the live-feed messages.
   Then the rings of 10 VMs are wrapped (2 simulated hours) to show the rows per VM stop
   growing. Prints the median and worst round.
2. The real driver against this machine's libvirtd with the tiny guest running
   (scripts/build-tiny-guest.sh): two rounds 2 s apart, the VM's series printed.

Last line: ``vms=10000 sample_ms=<worst round> rows_per_vm=<rows of one VM now, and the
bound>``.

    .venv/bin/python bench/metrics.py [--vms 10000] [--no-guest]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import time

from _common import GUEST_ISO, isolated_django, local_estate

TMP, ENV = isolated_django("ovmweb-bench-metrics-")

from django.core.management import call_command  # noqa: E402

SERVERS = 10
ROUNDS = 13
STEP = 10


def make_estate(vms_count: int):
    from django.db import transaction

    from ovmweb.inventory import choices
    from ovmweb.inventory.models import Repository, Server, ServerPool, VirtualMachine

    with transaction.atomic():
        pool = ServerPool.objects.create(name="bench-scale")
        servers = Server.objects.bulk_create(
            [
                Server(
                    name=f"server-{i}",
                    hostname=f"server-{i}.example.com",
                    server_pool=pool,
                    status=choices.ServerStatus.RUNNING,
                    memory_mib=262144,
                )
                for i in range(SERVERS)
            ]
        )
        repo = Repository.objects.create(name="repo-scale", kind=choices.RepositoryKind.SHARED, path="/srv/repo-scale")
        repo.server_pools.set([pool])
        VirtualMachine.objects.bulk_create(
            [
                VirtualMachine(
                    name=f"vm-{i:05d}",
                    server_pool=pool,
                    server=servers[i % SERVERS],
                    repository=repo,
                    status=choices.VmStatus.RUNNING,
                    max_vcpus=4,
                    max_memory_mib=2048,
                )
                for i in range(vms_count)
            ],
            batch_size=2000,
        )
    by_server: dict[int, list[str]] = {}
    for uuid, server_id in VirtualMachine.objects.filter(server_pool=pool).values_list("uuid", "server_id"):
        by_server.setdefault(server_id, []).append(str(uuid))
    return list(Server.objects.filter(server_pool=pool).order_by("pk")), by_server


class FakeSource:
    """Every domain's counters grow by a fixed load per round; the pools are 60 % full."""

    def __init__(self, by_server: dict[int, list[str]]):
        from ovmweb.hypervisor.base import PoolUsage

        self.by_server = by_server
        self.round = 0
        self.pool = PoolUsage(capacity_bytes=100 << 30, allocation_bytes=60 << 30, available_bytes=40 << 30)

    def __call__(self, server, pools):
        from ovmweb.hypervisor.base import DomainStats, HostStats, ServerStats

        n = self.round
        domains = [
            DomainStats(
                uuid=uuid,
                cpu_time_ns=n * (i % 10) * 10**9,
                vcpus=2,
                memory_actual_kib=1 << 20,
                memory_unused_kib=1 << 18,
                memory_available_kib=1 << 20,
                disk_read_bytes=n * 4096 * i,
                disk_write_bytes=n * 8192,
                disk_read_ops=n * 10,
                disk_write_ops=n * 20,
                net_rx_bytes=n * 1500 * i,
                net_tx_bytes=n * 1500,
            )
            for i, uuid in enumerate(self.by_server.get(server.pk, []))
        ]
        host = HostStats(
            cpu_busy_ns=n * 4 * 10**9, cpu_total_ns=n * 16 * 10**9, memory_total_kib=256 << 20, memory_free_kib=64 << 20
        )
        return ServerStats(host=host, domains=domains, pools={name: self.pool for name in pools})


def at_scale(vms_count: int) -> tuple[float, int]:
    """Times the rounds; returns (worst round ms, rows of one VM after them)."""
    from ovmweb.metrics import series
    from ovmweb.metrics.models import Sample
    from ovmweb.metrics.sampler import Sampler

    servers, by_server = make_estate(vms_count)
    source = FakeSource(by_server)
    clock = [1_800_000_000 - 1_800_000_000 % 600 - 60.0]  # one minute before a 10-minute boundary
    sampler = Sampler(source=source, clock=lambda: clock[0])
    times = []
    for n in range(ROUNDS):
        source.round = n
        t0 = time.perf_counter()
        result = sampler.sample(servers)
        times.append((time.perf_counter() - t0) * 1000)
        assert len(result.samples[series.VM]) == vms_count
        clock[0] += STEP
    vm_id = next(iter(result.samples[series.VM]))
    rows = Sample.objects.filter(kind=series.VM, object_id=vm_id).count()
    print(f"rounds={ROUNDS} servers={SERVERS} vms={vms_count}: one stats call per server and round")
    print(
        f"round ms: first {times[0]:.0f} (no rates yet), median {statistics.median(times):.0f}, worst {max(times):.0f}"
    )
    print(f"rows written per round: {vms_count} VMs + {SERVERS} servers + 1 repository (+ the means at boundaries)")
    return max(times), rows


def wrapped_rings() -> int:
    """Rows of one of 10 VMs after 2 simulated hours (720 rounds): tier 0 stops at 360."""
    from ovmweb.metrics import series
    from ovmweb.metrics.models import Sample
    from ovmweb.metrics.store import Store

    store = Store()
    start = 1_900_000_000
    for n in range(720):
        store.record(series.VM, start + n * STEP, {10**9 + i: {"cpu": float(n)} for i in range(10)})
    per_tier = [Sample.objects.filter(object_id=10**9, tier=t.index).count() for t in series.TIERS]
    print(f"2 simulated hours, rows of one VM per tier: {per_tier} (slots: {[t.slots for t in series.TIERS]})")
    return sum(per_tier)


def real_guest() -> None:
    """The libvirt driver on this machine with the tiny guest running: two rounds."""
    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor.connections import close_all
    from ovmweb.inventory.models import IsoFile, VirtualMachine
    from ovmweb.inventory.operations.vm_domain import domain_name
    from ovmweb.inventory.services import storage, vms
    from ovmweb.jobs.testing import run_pending_jobs
    from ovmweb.metrics import series
    from ovmweb.metrics.sampler import Sampler

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
    pool, server, repo = local_estate(user, TMP)
    with open(GUEST_ISO, "rb") as fh:
        storage.iso_upload(repository=repo, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size)
    run_pending_jobs()
    vm = vms.vm_create(
        user=user,
        name="bench-metrics",
        server_pool=pool,
        repository=repo,
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": IsoFile.objects.get(repository=repo)},
        boot_order=["cdrom"],
    )
    domain = domain_name(vm)
    try:
        vms.vm_action(vm=vm, action="start", user=user)
        run_pending_jobs()
        vm = VirtualMachine.objects.get(pk=vm.pk)
        if vm.status != "RUNNING":
            raise SystemExit(f"the tiny guest did not start: {vm.status}")
        sampler = Sampler()
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            result = sampler.sample([server])
            times.append((time.perf_counter() - t0) * 1000)
            time.sleep(2)
        values = result.samples[series.VM].get(vm.pk, {})
        shown = ", ".join(f"{k}={v:.0f}" for k, v in values.items() if v is not None)
        print(f"real driver, tiny guest: round ms {times[0]:.0f} and {times[1]:.0f}; {shown}")
        repo_values = result.samples[series.REPOSITORY].get(repo.pk, {})
        print(f"real driver, repository: {', '.join(f'{k}={v:.0f}' for k, v in repo_values.items())}")
    finally:
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", domain], capture_output=True)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "undefine", domain], capture_output=True)
        close_all()
        from ovmweb.hypervisor.libvirt import LibvirtDriver
        from ovmweb.inventory.services.repositories import pool_name

        driver = LibvirtDriver("qemu:///system")
        for part in ("disks", "isos", ""):
            driver.pool_undefine(pool_name(repo, part))
        driver.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10_000)
    parser.add_argument("--no-guest", action="store_true", help="skip the real-driver part")
    args = parser.parse_args()
    from ovmweb.metrics import series

    call_command("migrate", verbosity=0)
    try:
        if not args.no_guest:
            if not GUEST_ISO.exists():
                raise SystemExit(f"{GUEST_ISO} is missing: run scripts/build-tiny-guest.sh")
            real_guest()
        worst, rows = at_scale(args.vms)
        wrapped = wrapped_rings()
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"rows per VM: {rows} after these rounds, {wrapped} after 2 hours, at most {series.ROWS_PER_OBJECT} ever")
    print(f"vms={args.vms} sample_ms={worst:.0f} rows_per_vm={series.ROWS_PER_OBJECT}")


if __name__ == "__main__":
    main()
