"""HA failover time of the tiny guest between two servers, with the default monitor settings
(OVMWEB_RECONCILE_INTERVAL, OVMWEB_SERVER_OFFLINE_AFTER, OVMWEB_HA_RETRY as configured).

Self-contained: a temporary SQLite database and var directory; scripts/two-servers.sh
(state in var/ha-bench/) brings up servers a and b with disk leases (virtlockd, lockspace
on the shared directory); ovmweb discovers both over SSH into one pool with a shared
repository, creates an HA VM with a disk there and starts it on a. Each round kills the
libvirtd and QEMU processes of the server the VM runs on (``two-servers.sh crash``) while
the monitor runs as in production, and measures the seconds from that kill until the VM is
RUNNING on the other server (through the monitor's HA restart job); the killed server's
libvirtd is started again before the next round. After every round the QEMU processes of
the VM's UUID are counted on both servers (from inside each): more than one is a double
run. Last line: ``failover_s=X double_runs=N`` (X: median seconds).

    .venv/bin/python bench/ha.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
import uuid
from pathlib import Path

from _common import GUEST_ISO, ROOT, isolated_django

# Jobs are run by this process's main thread (run_pending_jobs) while the monitor thread works.
TMP, _ENV = isolated_django("ovmweb-bench-ha-", OVMWEB_EMBEDDED_WORKER="0")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

VAR = ROOT / "var" / "ha-bench"


def two_servers(*args: str) -> str:
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "two-servers.sh"), *args],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OVMWEB_VAR_DIR": str(VAR)},
    ).stdout


def ok(job) -> None:
    from ovmweb.jobs.testing import run_pending_jobs

    run_pending_jobs()
    job.refresh_from_db()
    if job.status != "SUCCESS":
        raise SystemExit(f"job {job.operation} failed: {job.error}")


def qemu_count(vm_uuid: str) -> int:
    from ovmweb.inventory.services import leases

    found = 0
    for key in ("a", "b"):
        out = two_servers("sh", key, "sh", "-c", leases._GUESTS_SCRIPT)
        found += sum(1 for m in leases._UUID_ARG.findall(out) if m.lower() == vm_uuid)
    return found


def estate(user):
    from ovmweb.inventory.models import IsoFile, Repository, Server
    from ovmweb.inventory.services import pools, repositories, servers, storage, vms
    from ovmweb.jobs.testing import run_pending_jobs

    endpoints = json.loads((VAR / "two-servers" / "servers.json").read_text())
    pool = pools.server_pool_create(user=user, name="bench-ha")
    found = {}
    for key in ("a", "b"):
        side = endpoints[key]
        ok(
            servers.server_discover(
                user=user,
                hostname=side["hostname"],
                transport="ssh",
                ssh_port=side["ssh_port"],
                private_key=Path(endpoints["private_key"]).read_text(),
                host_key_fingerprint=side["fingerprint"],
                name=side["name"],
                server_pool=pool,
            )
        )
        found[key] = Server.objects.get(name=side["name"])
        if not found[key].disk_leases:
            raise SystemExit(f"server {key} has no disk leases (lockd + virtlockd)")
    shared = Path(endpoints["shared_path"]) / f"bench-{uuid.uuid4().hex[:6]}"
    shared.mkdir()
    job = repositories.repository_create(user=user, name="shared", kind="SHARED", path=str(shared), server_pools=[pool])
    ok(job)
    repo = Repository.objects.get(pk=job.target_id)
    with open(GUEST_ISO, "rb") as fh:
        ok(storage.iso_upload(repository=repo, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size))
    vm = vms.vm_create(
        user=user,
        name="bench-ha",
        server_pool=pool,
        repository=repo,
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": IsoFile.objects.get(repository=repo)},
        disks=[{"new": {"name": "data", "size_bytes": 32 << 20, "repository": repo}}],
        boot_order=["cdrom", "disk"],
        ha_enabled=True,
    )
    run_pending_jobs()
    ok(vms.vm_action(vm=vm, action="start", user=user, server_id=found["a"].pk))
    return vm, found


def one_round(vm, found, n: int) -> float:
    """Kill the server the VM runs on; seconds until it is RUNNING on the other one."""
    from ovmweb.jobs.testing import run_pending_jobs

    vm.refresh_from_db()
    lost = "a" if vm.server_id == found["a"].pk else "b"
    other = found["b" if lost == "a" else "a"]
    time.sleep(2)  # the monitor is subscribed to the server's events
    t0 = time.monotonic()
    two_servers("crash", lost)
    while time.monotonic() - t0 < 180:
        run_pending_jobs()
        vm.refresh_from_db()
        if vm.status == "RUNNING" and vm.server_id == other.pk:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"round {n}: not RUNNING on {other.name} within 180 s ({vm.status})")
    seconds = time.monotonic() - t0
    two_servers("revive", lost)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "build-tiny-guest.sh")], check=True, stdout=subprocess.DEVNULL)
    call_command("migrate", verbosity=0)
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor import connections
    from ovmweb.monitor.service import Monitor
    from ovmweb.tunnels import pool as tunnel_pool

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    two_servers("up")
    monitor = Monitor()  # the configured defaults
    try:
        vm, found = estate(user)
        print(
            f"monitor: reconcile every {monitor.interval:g} s, offline after {monitor.offline_after:g} s, "
            f"HA retry {getattr(settings, 'OVMWEB_HA_RETRY', 5):g} s",
            flush=True,
        )
        monitor.start()
        times, doubles = [], 0
        for n in range(1, args.rounds + 1):
            vm.refresh_from_db()
            source = vm.server.name
            seconds = one_round(vm, found, n)
            count = qemu_count(str(vm.uuid))
            doubles += int(count > 1)
            times.append(seconds)
            print(
                f"round {n}: {source} killed -> RUNNING on {vm.server.name} in {seconds:.2f} s, {count} QEMU",
                flush=True,
            )
        print(f"failover_s={statistics.median(times):.2f} double_runs={doubles}")
    finally:
        monitor.stop()
        connections.close_all()
        tunnel_pool.close_all()
        two_servers("down")
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
