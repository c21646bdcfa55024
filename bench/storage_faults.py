"""Storage jobs under faults, on the real hypervisor: the two namespaced servers of
scripts/two-servers.sh (server a in pool one, b in pools one and two), a local repository
on each, a shared one seen by both pools, the tiny guest running on a.

Each run picks an operation (thin/sparse clone of a stopped VM, hot clone of the running
guest, move between repositories, cold migration between pools, live migration with
storage between a and b) and a fault at a random step, a step being any call into the
libvirt driver (volume create/clone/delete/info, pool refresh, define, migrate, backup...).
The job runs in a separate ``runjobworker`` process (bench/_fault_worker.py), which
announces each step on its stdout:

- ``kill``: the bench SIGKILLs the worker process at a random moment of that step (within
  the step's duration measured in a run without a fault; step 1 is the job's start before
  its first driver call; libvirt's own jobs go on or not as libvirtd decides), then starts a
  new worker, whose start recovers the interrupted job (``recover_interrupted_jobs``) as a
  restart does;
- ``ssh``: the connection to the server drops at that step (ConnectionFailed);
- ``full``: the target repository is full at that step (No space left on device);
- ``libvirt``: libvirt fails that call (an internal error).

After each run it checks: no orphan (a file in a repository no record names, a libvirt
definition of no VM, a running VM defined on both servers, a libvirt job still active on a
domain, a lock of a finished job); the source intact (its record, its disks' files, the running guest still running and its
marker still on its disk); and every copy that was made is point-in-time (it holds the
marker written before and not the one written after).

Prints, last line: ``runs=N orphans=X source_intact=Y/N point_in_time=Z/N``.

    .venv/bin/python bench/storage_faults.py [--runs 50] [--seed 1] [--ops clone,live_migrate] [--faults kill]

OVMWEB_BENCH_DISK_MIB sets the size of each VM's data disk (16 MiB), so that a fault can
land inside a longer copy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from _common import GUEST_ISO, ROOT, isolated_django

TMP, ENV = isolated_django("ovmweb-bench-faults-", OVMWEB_EMBEDDED_WORKER="0", OVMWEB_MONITOR="0")

from django.core.management import call_command  # noqa: E402

MIB = 1 << 20
DISK_MIB = int(os.environ.get("OVMWEB_BENCH_DISK_MIB", "16"))  # the data disk of each VM
OPERATIONS = ("clone", "hot_clone", "move", "cold_migrate", "live_migrate")
FAULTS = ("kill", "ssh", "full", "libvirt")
WORKER = ROOT / "bench" / "_fault_worker.py"


def _worker_run(at: int | None, fault: str | None, rng: random.Random, span: float = 0.0) -> tuple[list, bool]:
    """One ``runjobworker --batch`` process (recovery first) running what is queued; with
    ``fault == "kill"`` it gets a SIGKILL at a random moment within ``span`` seconds after it
    announced step ``at`` (``span``: how long that step lasted without a fault), otherwise
    ``fault`` is injected by the worker itself at that step. Returns (the monotonic times of
    the steps seen and, last, of the job's end; killed)."""
    extra = {"OVMWEB_FAULT_AT": str(at or ""), "OVMWEB_FAULT_KIND": fault or ""}
    with open(Path(TMP) / "worker.log", "a") as log:
        proc = subprocess.Popen(  # nosec B603  # our own worker script
            [sys.executable, str(WORKER)],
            env={**os.environ, **ENV, **extra},
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    watchdog = threading.Timer(900, proc.kill)
    watchdog.start()
    times, killed = [], False
    try:
        for line in proc.stdout:
            if not line.startswith(("@@step ", "@@end")):
                continue
            times.append(time.monotonic())
            if fault == "kill" and line.startswith("@@step ") and int(line.split()[1]) == at:
                time.sleep(rng.uniform(0, span))
                os.kill(proc.pid, signal.SIGKILL)
                killed = True
                break
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
    return times, killed


def _two_servers(command: str) -> dict:
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "two-servers.sh"), command],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OVMWEB_VAR_DIR": str(ROOT / "var")},
    )
    if command == "down":
        return {}
    return json.loads((ROOT / "var" / "two-servers" / "servers.json").read_text())


def _ok(job):
    from ovmweb.jobs.testing import run_pending_jobs

    run_pending_jobs()
    job.refresh_from_db()
    if job.status != "SUCCESS":
        raise SystemExit(f"setup job {job.summary} failed: {job.error}")
    return job


class Estate:
    """Servers, pools, repositories and the two VMs of the runs."""

    def __init__(self, user, endpoints: dict):
        from ovmweb.inventory.models import Repository, Server
        from ovmweb.inventory.services import pools, repositories, servers, storage

        self.user, self.endpoints, sub = user, endpoints, uuid.uuid4().hex[:8]
        self.one = pools.server_pool_create(user=user, name="one")
        self.two = pools.server_pool_create(user=user, name="two")
        key = Path(endpoints["private_key"]).read_text()
        found = {}
        for side, pool in (("a", self.one), ("b", self.one)):
            ep = endpoints[side]
            _ok(
                servers.server_discover(
                    user=user,
                    hostname=ep["hostname"],
                    transport="ssh",
                    ssh_port=ep["ssh_port"],
                    ssh_user="root",
                    private_key=key,
                    host_key_fingerprint=ep["fingerprint"],
                    name=ep["name"],
                    server_pool=pool,
                )
            )
            found[side] = Server.objects.get(name=ep["name"])
        self.a, self.b = found["a"], found["b"]
        (Path(endpoints["shared_path"]) / sub).mkdir()
        self.shared = Repository.objects.get(
            pk=_ok(
                repositories.repository_create(
                    user=user,
                    name="shared",
                    kind="SHARED",
                    path=f"{endpoints['shared_path']}/{sub}",
                    server_pools=[self.one, self.two],
                )
            ).target_id
        )
        self.local = {}
        self.dirs = {self.shared.pk: Path(self.shared.path)}
        for side, server in (("a", self.a), ("b", self.b)):
            (Path(endpoints["local_backing"][side]) / sub).mkdir()
            repo = Repository.objects.get(
                pk=_ok(
                    repositories.repository_create(
                        user=user,
                        name=f"local-{side}",
                        kind="LOCAL",
                        path=f"{endpoints['local_path']}/{sub}",
                        server=server,
                        server_pools=[self.one],
                    )
                ).target_id
            )
            self.local[side] = repo
            self.dirs[repo.pk] = Path(endpoints["local_backing"][side]) / sub
        with open(GUEST_ISO, "rb") as fh:
            _ok(
                storage.iso_upload(
                    repository=self.shared, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size
                )
            )
        from ovmweb.inventory.models import IsoFile

        self.iso = IsoFile.objects.get(repository=self.shared)
        self.stopped = self._vm("stopped", self.local["a"])
        self.wanderer = self._vm("wanderer", self.shared)
        self.guest = self._vm("guest", self.local["a"])
        from ovmweb.inventory.services import vms

        _ok(vms.vm_action(vm=self.guest, action="start", user=user, server_id=self.a.pk))
        self.guest.refresh_from_db()
        self.shell_marker = None

    def _vm(self, name, repo):
        from ovmweb.inventory.services import vms
        from ovmweb.jobs.testing import run_pending_jobs

        vm = vms.vm_create(
            user=self.user,
            name=name,
            server_pool=self.one,
            repository=repo,
            domain_type="PVHVM",
            os_type="OTHER_LINUX",
            memory_mib=160,
            max_memory_mib=160,
            source={"kind": "iso", "iso": self.iso},
            disks=[{"new": {"name": f"{name}-data", "size_bytes": DISK_MIB * MIB, "repository": repo}}],
            boot_order=["cdrom", "disk"],
        )
        run_pending_jobs()
        return vm

    def image(self, disk) -> Path:
        return self.dirs[disk.repository_id] / "VirtualDisks" / disk.volume


def _read(image: Path, sector: int, length: int) -> bytes:
    from tests.integration.guest_disk import read_image

    return read_image(image, sector * 512, length)


def _shell(estate):
    from tests.migration.conftest import SerialShell

    vm = estate.guest
    vm.refresh_from_db()
    shell = SerialShell(vm.server, vm.serial_port)
    shell.wait_for_shell(timeout=120)
    return shell


def _guest_write(estate, sector: int, marker: str) -> None:
    shell = _shell(estate)
    try:
        shell.run(f"printf '%s' '{marker}' | dd of=/dev/vda bs=512 seek={sector} conv=notrunc,fsync 2>/dev/null")
    finally:
        shell.close()


def _guest_read(estate, sector: int, length: int) -> str:
    shell = _shell(estate)
    try:
        return shell.run(f"dd if=/dev/vda bs=512 skip={sector} count=1 2>/dev/null | head -c {length}")
    finally:
        shell.close()


# ---------------------------------------------------------------- operations


def op_clone(estate, run: int) -> tuple:
    from ovmweb.inventory.services import vm_copies

    return vm_copies.vm_clone(vm=estate.stopped, user=estate.user, name=f"clone-{run}"), "stopped"


def op_hot_clone(estate, run: int) -> tuple:
    from ovmweb.inventory.services import vm_copies

    return vm_copies.vm_clone(vm=estate.guest, user=estate.user, name=f"hot-{run}"), "guest"


def op_move(estate, run: int) -> tuple:
    from ovmweb.inventory.services import vm_copies

    vm = estate.stopped
    vm.refresh_from_db()
    target = estate.local["a"] if vm.repository_id == estate.shared.pk else estate.shared
    return vm_copies.vm_move(vm=vm, user=estate.user, target_repository=target), "stopped"


def op_cold_migrate(estate, run: int) -> tuple:
    from ovmweb.inventory.services import vm_migration

    vm = estate.wanderer
    vm.refresh_from_db()
    target = estate.two if vm.server_pool_id == estate.one.pk else estate.one
    return vm_migration.vm_migrate(vm=vm, user=estate.user, target_pool=target), "wanderer"


def op_live_migrate(estate, run: int) -> tuple:
    from ovmweb.inventory.services import vm_migration

    vm = estate.guest
    vm.refresh_from_db()
    target = estate.b if vm.server_id == estate.a.pk else estate.a
    return vm_migration.vm_migrate(vm=vm, user=estate.user, target_server=target), "guest"


SOURCES = {
    "clone": "stopped",
    "hot_clone": "guest",
    "move": "stopped",
    "cold_migrate": "wanderer",
    "live_migrate": "guest",
}
OPS = {
    "clone": op_clone,
    "hot_clone": op_hot_clone,
    "move": op_move,
    "cold_migrate": op_cold_migrate,
    "live_migrate": op_live_migrate,
}


# ---------------------------------------------------------------- checks


def _orphan_files(estate) -> list[str]:
    from ovmweb.inventory.models import IsoFile, VirtualDisk

    found = []
    for repo_id, root in estate.dirs.items():
        volumes = set(VirtualDisk.objects.filter(repository_id=repo_id).values_list("volume", flat=True))
        found += [f"file {p}" for p in (root / "VirtualDisks").glob("*") if p.name not in volumes]
        isos = set(IsoFile.objects.filter(repository_id=repo_id).values_list("name", flat=True))
        found += [f"iso {p}" for p in (root / "ISOs").glob("*") if p.name not in isos]
    return found


def _libvirt_job_active(server, uuid: str) -> bool:
    """A job of a killed worker that libvirt goes on with (a backup, a migration): nothing runs now."""
    import libvirt

    from ovmweb.hypervisor.connections import driver_for

    try:
        return driver_for(server)._domain(uuid).jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE
    except Exception:  # gone meanwhile
        return False


def _orphan_domains(estate) -> list[str]:
    from ovmweb.hypervisor.connections import driver_for
    from ovmweb.inventory.models import VirtualMachine

    found = []
    known = {str(u): server_id for u, server_id in VirtualMachine.objects.values_list("uuid", "server_id")}
    where: dict[str, list] = {}
    for server in (estate.a, estate.b):
        for dom in driver_for(server).list_domains():
            if dom.uuid not in known:
                found.append(f"domain {dom.uuid} on {server.name}")
            elif known[dom.uuid] != server.pk:
                found.append(f"domain {dom.uuid} left on {server.name}, not its server")
            where.setdefault(dom.uuid, []).append((server.name, dom.state.value))
            if dom.state.value == "running" and _libvirt_job_active(server, dom.uuid):
                found.append(f"libvirt job (backup, migration) left on domain {dom.uuid} on {server.name}")
    found += [
        f"domain {u} defined on {places}"
        for u, places in where.items()
        if len(places) > 1 and any(state == "running" for _s, state in places)
    ]
    return found


def orphans(estate) -> list[str]:
    """Files no record names, definitions of no VM (or a running VM defined twice), locks of finished jobs."""
    from ovmweb.jobs.models import ObjectLock

    found = _orphan_files(estate) + _orphan_domains(estate)
    stale = ObjectLock.objects.exclude(job__status__in=["QUEUED", "RUNNING"]).count()
    if stale:
        found.append(f"{stale} lock(s) of finished jobs")
    return found


def source_intact(estate, name: str, marker: str) -> bool:
    from ovmweb.hypervisor.connections import driver_for
    from ovmweb.inventory.models import VirtualMachine

    vm = VirtualMachine.objects.filter(pk=getattr(estate, name).pk).first()
    if vm is None:
        return False
    disks = [s.virtual_disk for s in vm.disk_slots.select_related("virtual_disk") if s.virtual_disk_id]
    if not disks or not all(estate.image(d).exists() for d in disks):
        return False
    if name == "guest":
        if vm.status != "RUNNING" or vm.server is None:
            return False
        info = driver_for(vm.server).domain_info(str(vm.uuid))
        return info.state.value == "running" and _guest_read(estate, 1, len(marker)) == marker
    return vm.status == "STOPPED" and _read(estate.image(disks[0]), 1, len(marker)) == marker.encode()


def point_in_time(estate, job, before: str, after: str) -> bool:
    """A clone that was made holds ``before`` at sector 1 and not ``after``."""
    from ovmweb.inventory.models import VirtualMachine

    if job.operation != "vm.clone" or job.status != "SUCCESS":
        return True
    clone = VirtualMachine.objects.get(pk=job.target_id)
    disk = clone.disk_slots.get(kind="DISK").virtual_disk
    return _read(estate.image(disk), 1, len(before)) == before.encode()


# ---------------------------------------------------------------- runs


def _settle(at: int | None, fault: str | None, rng: random.Random, span: float = 0.0) -> tuple[int, bool]:
    """Run the queue in a worker process; a killed worker leaves its job RUNNING: a new
    worker is started, whose start recovers it (as a restart does). Returns (steps seen, killed)."""
    times, killed = _worker_run(at, fault, rng, span)
    if killed:
        _worker_run(None, None, rng)
    return len(times) - (0 if killed else 1), killed


def _mark(estate, name: str, marker: str) -> None:
    if name == "guest":
        _guest_write(estate, 1, marker)
        return
    vm = getattr(estate, name)
    disk = vm.disk_slots.get(kind="DISK").virtual_disk
    subprocess.run(
        ["qemu-io", "-f", disk.format, "-c", f"write -P 0x{ord(marker[0]):02x} 512 512", str(estate.image(disk))],
        check=True,
        capture_output=True,
    )


def _steps_of(estate, op: str, run: int, rng: random.Random) -> list[float]:
    """How long each step of the operation lasts without a fault (measured once): step 1
    is the job's start, the others its driver calls."""
    OPS[op](estate, run)
    times, _killed = _worker_run(None, None, rng)
    return [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)] or [0.0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--ops", default=",".join(OPERATIONS), help="comma-separated subset of " + ",".join(OPERATIONS))
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset of " + ",".join(FAULTS))
    args = parser.parse_args()
    rng = random.Random(args.seed)  # nosec B311  # fault placement, not security
    logging.getLogger("ovmweb.jobs.runner").setLevel(logging.ERROR)  # the injected failures are expected
    call_command("migrate", verbosity=0)
    from django.contrib.auth import get_user_model

    from ovmweb.hypervisor.connections import close_all

    user = get_user_model().objects.create_superuser("bench", password="x")
    endpoints = _two_servers("up")
    counts = {"runs": 0, "orphans": 0, "intact": 0, "pit": 0}
    try:
        estate = Estate(user, endpoints)
        steps = {op: _steps_of(estate, op, 1000 + i, rng) for i, op in enumerate(args.ops.split(","))}
        print("steps per operation without a fault:", steps, file=sys.stderr)
        for run in range(args.runs):
            ops = args.ops.split(",")
            op = ops[run % len(ops)]
            fault = rng.choice(args.faults.split(","))
            # A kill may land at any step (the job's start too); the other faults at a driver call.
            n = len(steps[op])
            at = rng.randint(1, n) if fault == "kill" or n == 1 else rng.randint(2, n)
            # Source markers: sector 1 holds "A..." before the job; the pristine byte is known.
            name = SOURCES[op]
            before = "A" * 8
            _mark(estate, name, before)
            try:
                job, name = OPS[op](estate, run)
            except Exception as exc:  # refused at submit: a run where nothing happened
                print(f"run {run} {op}: refused at submit: {exc}", file=sys.stderr)
                continue
            seen, killed = _settle(at, fault, rng, steps[op][at - 1])
            job.refresh_from_db()
            _mark(estate, name, "B" * 8)  # after the copy: must not show in it
            left = orphans(estate)
            intact = source_intact(estate, name, "B" * 8)
            pit = point_in_time(estate, job, before, "B" * 8)
            counts["runs"] += 1
            counts["orphans"] += len(left)
            counts["intact"] += int(intact)
            counts["pit"] += int(pit)
            print(
                f"run {run} {op} fault={fault}@{at}/{len(steps[op])}{' killed' if killed else ''} seen={seen} job={job.status} "
                f"orphans={left} intact={intact} pit={pit} {job.error[:120]}",
                file=sys.stderr,
            )
    finally:
        close_all()
        from ovmweb.tunnels import pool as tunnel_pool

        tunnel_pool.close_all()
        _two_servers("down")
    n = counts["runs"]
    print(
        f"runs={n} orphans={counts['orphans']} source_intact={counts['intact']}/{n} point_in_time={counts['pit']}/{n}"
    )


if __name__ == "__main__":
    main()
