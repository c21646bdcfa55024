"""Live migration time and downtime of the tiny guest (256 MiB, TCG) between two servers.

Self-contained: a temporary SQLite database and var directory; scripts/two-servers.sh
brings up servers a and b on this machine (own namespaces, libvirtd and sshd each);
ovmweb discovers both over SSH into one pool, creates a shared repository (same
directory on both) with the tiny guest's ISO and a disk, starts the VM on a and waits
for its shell on the serial console. Then it live-migrates the VM a -> b -> a ...
through the services and the job runner (``vm_migrate`` + ``run_pending_jobs``, the
code the API calls), and reports per round the job's wall time (submit to SUCCESS)
and libvirt's own figures for the completed migration job (time elapsed, downtime).
The servers are taken down at the end. Last line: ``migrate_s=X downtime_ms=Y``
(medians: job wall time in seconds, libvirt's downtime in milliseconds).

    .venv/bin/python bench/migration.py [--rounds 6]
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

# The bench drives jobs itself (run_pending_jobs); no worker may claim them first.
TMP, _ENV = isolated_django("ovmweb-bench-migration-", OVMWEB_EMBEDDED_WORKER="0")

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402


def two_servers(command: str) -> None:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "two-servers.sh"), command],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OVMWEB_VAR_DIR": str(ROOT / "var")},
    )


def ok(job) -> None:
    from ovmweb.jobs.testing import run_pending_jobs

    run_pending_jobs()
    job.refresh_from_db()
    if job.status != "SUCCESS":
        raise SystemExit(f"job {job.operation} failed: {job.error}")


def wait_for_shell(server, port: int, timeout: float = 240) -> None:
    from ovmweb.tunnels import pool

    channel = pool.open_direct_tcpip(server, port)
    channel.settimeout(0.5)
    deadline, buffer, sent = time.monotonic() + timeout, b"", 0.0
    try:
        while time.monotonic() < deadline:
            if time.monotonic() - sent > 2:
                channel.sendall(b'\necho "RE""ADY"\n')
                sent = time.monotonic()
            try:
                buffer += channel.recv(65536)
            except (TimeoutError, OSError):
                pass
            if b"READY" in buffer:
                return
        raise SystemExit(f"no guest shell on the serial console: {buffer[-300:]!r}")
    finally:
        channel.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    subprocess.run(["bash", str(ROOT / "scripts" / "build-tiny-guest.sh")], check=True, stdout=subprocess.DEVNULL)
    call_command("migrate", verbosity=0)
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor import connections
    from ovmweb.inventory.models import IsoFile, Repository, Server, VirtualMachine
    from ovmweb.inventory.services import pools, repositories, servers, storage, vm_migration, vms
    from ovmweb.jobs.testing import run_pending_jobs
    from ovmweb.tunnels import pool as tunnel_pool

    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "x")
    two_servers("up")
    try:
        endpoints = json.loads((ROOT / "var" / "two-servers" / "servers.json").read_text())
        pool = pools.server_pool_create(user=user, name="bench")
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
        shared = Path(endpoints["shared_path"]) / f"bench-{uuid.uuid4().hex[:6]}"
        shared.mkdir()
        job = repositories.repository_create(
            user=user, name="shared", kind="SHARED", path=str(shared), server_pools=[pool]
        )
        ok(job)
        repo = Repository.objects.get(pk=job.target_id)
        with open(GUEST_ISO, "rb") as fh:
            ok(
                storage.iso_upload(
                    repository=repo, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size
                )
            )
        vm = vms.vm_create(
            user=user,
            name="bench-mig",
            server_pool=pool,
            repository=repo,
            domain_type="PVHVM",
            os_type="OTHER_LINUX",
            memory_mib=256,
            max_memory_mib=256,
            source={"kind": "iso", "iso": IsoFile.objects.get(repository=repo)},
            disks=[{"new": {"name": "data", "size_bytes": 32 << 20, "repository": repo}}],
            boot_order=["cdrom", "disk"],
        )
        run_pending_jobs()
        ok(vms.vm_action(vm=vm, action="start", user=user, server_id=found["a"].pk))
        vm.refresh_from_db()
        wait_for_shell(vm.server, vm.serial_port)
        walls, downtimes, elapsed = [], [], []
        for n in range(args.rounds):
            target = found["b"] if vm.server_id == found["a"].pk else found["a"]
            source_name = vm.server.name
            t0 = time.monotonic()
            job = vm_migration.vm_migrate(vm=vm, user=user, target_server=target)
            ok(job)
            wall = time.monotonic() - t0
            vm = VirtualMachine.objects.select_related("server").get(pk=vm.pk)
            assert vm.server_id == target.pk and vm.status == "RUNNING", (vm.server_id, vm.status)
            walls.append(wall)
            downtimes.append(job.result["downtime_ms"])
            elapsed.append(job.result["time_elapsed_ms"])
            print(
                f"round {n + 1}: {source_name} -> {target.name}: job {wall:.2f} s, libvirt time_elapsed "
                f"{job.result['time_elapsed_ms']} ms, downtime {job.result['downtime_ms']} ms, "
                f"{(job.result['data_bytes'] or 0) >> 20} MiB sent",
                flush=True,
            )
        wait_for_shell(vm.server, vm.serial_port, timeout=30)  # still the same, answering guest
        print(f"median libvirt time_elapsed_ms={statistics.median(elapsed):.0f}")
        print(f"migrate_s={statistics.median(walls):.2f} downtime_ms={statistics.median(downtimes):.0f}")
    finally:
        connections.close_all()
        tunnel_pool.close_all()
        two_servers("down")
        shutil.rmtree(TMP, ignore_errors=True)


if __name__ == "__main__":
    main()
