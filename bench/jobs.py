"""Job throughput of the real worker on SQLite.

Fills its own temporary SQLite database (WAL, as the embedded default) with
one server pool, 2 servers (--servers) and 500 stopped VMs, then queues 1,000 VM actions
through the real service (`vm_action`): 500 starts, and once they have run,
500 stops. They are executed by the embedded worker (the django-tasks-db worker
loop that claims several tasks per transaction, on a pool of threads, as inside `manage.py
runovmweb`) running the real `vm.start` and `vm.stop` operations against
libvirt's test:///default driver (OVMWEB_HYPERVISOR_URI). Prints submission and
execution figures, the load average and jobs per CPU-second of this process (the
figure that depends least on what else the machine runs). Then, with the same
worker (OVMWEB_WORKER_THREADS threads, as `runovmweb` starts it), a 30 s job on one
VM (a bench-only operation) and, once it runs, a start of another VM:
``slow_job_blocks_ms=X`` is how long that start waited for a worker thread (from its
submission to the start of its run; target under 500). Last line: ``jobs_per_s=X``
(jobs executed per second of worker time).

    .venv/bin/python bench/jobs.py [--vms 500]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TMP = tempfile.mkdtemp(prefix="ovmweb-bench-jobs-")
os.environ["OVMWEB_VAR_DIR"] = TMP
os.environ["OVMWEB_SQLITE_PATH"] = os.path.join(TMP, "bench.sqlite3")
os.environ.pop("OVMWEB_DATABASE_URL", None)
os.environ.pop("OVMWEB_REDIS_URL", None)
os.environ["DJANGO_SETTINGS_MODULE"] = "ovmweb.settings.base"
os.environ["OVMWEB_HYPERVISOR_URI"] = "test:///default"
os.environ.setdefault("OVMWEB_LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402


def _setup(n_vms: int, n_servers: int):
    from django.contrib.auth import get_user_model

    from ovmweb.inventory import choices, models

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
    pool = models.ServerPool.objects.create(name="bench-pool", architecture=choices.Architecture.X86)
    repo = models.Repository.objects.create(
        name="bench-repo",
        kind=choices.RepositoryKind.SHARED,
        backend=choices.RepositoryBackend.DIR,
        path=os.path.join(TMP, "repo"),
        capacity_bytes=1 << 40,
        available_bytes=1 << 40,
    )
    repo.server_pools.set([pool])
    for i in range(n_servers):
        models.Server.objects.create(
            name=f"bench-server-{i}",
            hostname=f"bench-server-{i}.example.com",
            transport=choices.Transport.LOCAL,
            status=choices.ServerStatus.RUNNING,
            server_pool=pool,
            host_uuid=f"00000000-0000-4000-8000-{i:012d}",
            cpu_vendor="GenuineIntel",
            cpu_family=6,
            cpu_model=85,
            cpu_cores=64,
            memory_mib=1 << 20,
            domain_types=["qemu"],
        )
    models.VirtualMachine.objects.bulk_create(
        [
            models.VirtualMachine(
                name=f"bench-vm-{i}",
                domain_type=choices.DomainType.HVM,
                server_pool=pool,
                repository=repo,
                os_type=choices.OsType.ORACLE_LINUX_6,
                vcpus=1,
                max_vcpus=1,
                memory_mib=128,
                max_memory_mib=128,
                status=choices.VmStatus.STOPPED,
            )
            for i in range(n_vms)
        ]
    )
    return user


def _queue(user, action: str) -> float:
    from ovmweb.inventory.models import VirtualMachine
    from ovmweb.inventory.services.vms import vm_action

    started = time.perf_counter()
    for vm in VirtualMachine.objects.order_by("pk"):
        vm_action(vm=vm, action=action, user=user)
    return time.perf_counter() - started


def _drain(worker_interval: float) -> tuple[float, float, dict[str, int]]:
    """Start the embedded worker, wait until no job is live, stop it; return
    the elapsed wall time and the CPU time this process used meanwhile."""
    from django.db.models import Count

    from ovmweb.jobs.choices import JobStatus
    from ovmweb.jobs.models import Job
    from ovmweb.jobs.worker import EmbeddedWorker

    worker = EmbeddedWorker(interval=worker_interval, recover=False)
    started, cpu_started = time.perf_counter(), time.process_time()
    worker.start()
    try:
        while Job.objects.filter(status__in=JobStatus.LIVE).exists():
            time.sleep(0.05)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        worker.stop()
    counts = dict(Job.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
    return elapsed, cpu, counts


def _slow_job_blocks_ms(user, interval: float) -> float:
    """Milliseconds a VM start waits behind a 30 s job on another VM, through the embedded worker."""
    import threading

    from django.db import transaction

    from ovmweb.inventory.models import VirtualMachine
    from ovmweb.inventory.services.vms import vm_action
    from ovmweb.jobs.choices import JobStatus
    from ovmweb.jobs.models import Job
    from ovmweb.jobs.registry import operation
    from ovmweb.jobs.services import job_submit
    from ovmweb.jobs.worker import EmbeddedWorker

    release = threading.Event()

    @operation("bench.slow")
    def slow(ctx, seconds: float = 30) -> None:
        # Stands for a guest that takes its time to shut down; ends early once measured.
        release.wait(seconds)

    vm_a, vm_b = VirtualMachine.objects.order_by("pk")[:2]
    worker = EmbeddedWorker(interval=interval, recover=False)
    worker.start()
    try:
        with transaction.atomic():
            slow_job = job_submit(operation="bench.slow", summary="slow stop", target=vm_a, lock=[vm_a])
        while Job.objects.get(pk=slow_job.pk).status != JobStatus.RUNNING:
            time.sleep(0.01)
        submitted = time.time()
        start = vm_action(vm=vm_b, action="start", user=user)
        while (started_at := Job.objects.get(pk=start.pk).started_at) is None:
            time.sleep(0.005)
        waited = (started_at.timestamp() - submitted) * 1000
        while Job.objects.get(pk=start.pk).status in JobStatus.LIVE:
            time.sleep(0.01)
        release.set()
        while Job.objects.get(pk=slow_job.pk).status in JobStatus.LIVE:
            time.sleep(0.01)
    finally:
        release.set()
        worker.stop()
    return waited


def _timings(operation: str) -> str:
    """Median time inside the runner per job, and median gap between two job starts
    (jobs run side by side: the gap is the run time shared out among the threads)."""
    import statistics

    from ovmweb.jobs.models import Job

    rows = list(Job.objects.filter(operation=operation).order_by("started_at").values_list("started_at", "finished_at"))
    inside = [(f - s).total_seconds() * 1000 for s, f in rows]
    gaps = [(rows[i + 1][0] - rows[i][0]).total_seconds() * 1000 for i in range(len(rows) - 1)]
    return f"median ms per job in runner {statistics.median(inside):.1f}, between starts {statistics.median(gaps):.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=500, help="VMs; each is started then stopped (2 jobs per VM)")
    parser.add_argument("--servers", type=int, default=2, help="servers in the pool (placement looks at each)")
    parser.add_argument("--interval", type=float, default=0.1, help="worker poll interval of an empty queue (s)")
    args = parser.parse_args()
    try:
        call_command("migrate", verbosity=0)
        with connection.cursor() as cur:
            cur.execute("PRAGMA journal_mode")
            journal = cur.fetchone()[0]
        user = _setup(args.vms, args.servers)
        from ovmweb.jobs.registry import autodiscover

        autodiscover()
        total_jobs = 0
        total_worker = total_cpu = 0.0
        for action in ("start", "stop"):
            queued = _queue(user, action)
            elapsed, cpu, counts = _drain(args.interval)
            total_jobs += args.vms
            total_worker += elapsed
            total_cpu += cpu
            print(
                f"{action}: queued {args.vms} in {queued:.2f}s ({args.vms / queued:.0f}/s), "
                f"worker ran them in {elapsed:.2f}s ({args.vms / elapsed:.1f} jobs/s, "
                f"{args.vms / cpu:.1f} jobs per CPU-second); statuses so far {counts}"
            )
            print(f"  vm.{action}: {_timings(f'vm.{action}')}")
        from ovmweb.inventory.models import VirtualMachine
        from ovmweb.jobs.choices import JobStatus
        from ovmweb.jobs.models import Job

        failed = Job.objects.exclude(status=JobStatus.SUCCESS).count()
        if failed:
            sample = Job.objects.exclude(status=JobStatus.SUCCESS).values_list("operation", "error").first()
            print(f"WARNING: {failed} jobs did not succeed, e.g. {sample}")
        stopped = VirtualMachine.objects.filter(status="STOPPED").count()
        print(
            f"sqlite journal_mode={journal}; servers={args.servers}; VMs stopped again: {stopped}/{args.vms}; jobs: {total_jobs}"
        )
        # Wall time depends on what else the machine runs; CPU time much less so.
        print(
            f"load average {os.getloadavg()[0]:.2f}; jobs per CPU-second of this process: {total_jobs / total_cpu:.1f}"
        )
        print(f"slow_job_blocks_ms={_slow_job_blocks_ms(user, args.interval):.0f}")
        print(f"jobs_per_s={total_jobs / total_worker:.1f}")
    finally:
        from ovmweb.hypervisor.connections import close_all

        close_all()
        connection.close()
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
