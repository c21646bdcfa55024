"""Time to RUNNING: ovmweb's API against `virsh start`, same guest, same machine.

Self-contained: a temporary SQLite database and var directory; this machine's
libvirtd (qemu:///system) discovered as a `local` server, a repository in the
temporary directory holding the tiny guest's ISO (scripts/build-tiny-guest.sh),
one VM made from it. `manage.py runovmweb` (daphne + embedded job worker +
hypervisor monitor, the default deployment) serves the API in a subprocess.

Per round: POST /api/v1/vms/{id}/start/ with a token, then GET /api/v1/vms/{id}/
every 25 ms (BENCH_POLL) until ``status == "RUNNING"``; the VM is then killed through the API
and seen STOPPED. Baseline per round: `virsh start <domain>` of the very domain
ovmweb defined (time until virsh returns, i.e. libvirt reports it running), then
`virsh destroy`, timing how soon the API shows that stop (the monitor's event
path). Prints both medians (5 rounds each) and, last, ``ratio=X``.

    .venv/bin/python bench/vm_start.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

from _common import GUEST_ISO, ROOT, free_port, isolated_django, local_estate

TMP, ENV = isolated_django("ovmweb-bench-vmstart-")

from django.core.management import call_command  # noqa: E402

# GET polling period. Each GET is served by the same process as the worker and the
# monitor; polling much faster than this measurably slows the start being timed.
POLL = float(os.environ.get("BENCH_POLL", "0.025"))
# Pause before each timed start, both ways alike, so that neither start overlaps
# the teardown of the previous QEMU process (libvirtd cleanup, the monitor's events).
SETTLE = float(os.environ.get("BENCH_SETTLE", "1.0"))


def setup() -> tuple[str, int, str]:
    """Migrate, make the estate through the services; returns (token, vm id, domain name)."""
    from django.contrib.auth import get_user_model

    from ovmweb.accounts.tokens import create_token
    from ovmweb.hypervisor.connections import close_all
    from ovmweb.inventory.models import IsoFile
    from ovmweb.inventory.operations.vm_domain import domain_name
    from ovmweb.inventory.services import storage, vms
    from ovmweb.jobs.testing import run_pending_jobs

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "bench-pw-123")
    _, token = create_token(user=user)
    pool, server, repo = local_estate(user, TMP)
    with open(GUEST_ISO, "rb") as fh:
        storage.iso_upload(repository=repo, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size)
    run_pending_jobs()
    iso = IsoFile.objects.get(repository=repo)
    vm = vms.vm_create(
        user=user,
        name=f"bench-{os.getpid()}",
        server_pool=pool,
        repository=repo,
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": iso},
        boot_order=["cdrom"],
    )
    close_all()
    return token, vm.pk, domain_name(vm)


class Api:
    def __init__(self, port: int, token: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str) -> tuple[int, dict]:
        self.conn.request(method, path, body=b"{}" if method == "POST" else None, headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        return response.status, (json.loads(body) if body else {})

    def wait_status(self, vm_id: int, wanted: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, body = self.call("GET", f"/api/v1/vms/{vm_id}/")
            if body.get("status") == wanted:
                return
            if body.get("status") == "STOPPED" and wanted == "RUNNING":
                # A failed start ends STOPPED: say why instead of timing out.
                _s, jobs = self.call("GET", "/api/v1/jobs/?limit=1")
                raise SystemExit(f"start failed: {jobs}")
            time.sleep(POLL)
        raise SystemExit(f"VM {vm_id} not {wanted} within {timeout}s")


def virsh(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run(["virsh", "-q", "-c", "qemu:///system", *args], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"virsh {' '.join(args)}: {done.stderr.strip()}")
    return done


def job_breakdown(api: Api, job_id: int) -> tuple[float, float]:
    """(ms between submission and the worker picking the job up, ms the job ran)."""
    from django.utils.dateparse import parse_datetime

    _s, job = api.call("GET", f"/api/v1/jobs/{job_id}/")
    created, started, finished = (parse_datetime(job[k]) for k in ("created_at", "started_at", "finished_at"))
    return (started - created).total_seconds() * 1000, (finished - started).total_seconds() * 1000


def wait_domstate(domain: str, wanted: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while virsh("domstate", domain).stdout.strip() != wanted:
        if time.monotonic() > deadline:
            raise SystemExit(f"{domain} not {wanted} within {timeout}s")
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not GUEST_ISO.exists():
        raise SystemExit(f"{GUEST_ISO} is missing: run scripts/build-tiny-guest.sh")
    token, vm_id, domain = setup()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runovmweb", "--bind", f"127.0.0.1:{port}"],
        env={**os.environ, **ENV},
        cwd=ROOT,
        start_new_session=True,
    )
    api_times: list[float] = []
    virsh_times: list[float] = []
    breakdown: list[tuple[float, float]] = []
    off_times: list[float] = []  # domain stopped behind ovmweb's back -> STOPPED in the API
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("runovmweb did not come up") from None
                time.sleep(0.2)
        api = Api(port, token)
        api.call("GET", f"/api/v1/vms/{vm_id}/")  # warm the connection and the first request
        for round_ in range(args.rounds):
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            status, body = api.call("POST", f"/api/v1/vms/{vm_id}/start/")
            if status != 202:
                raise SystemExit(f"start refused: {status} {body}")
            api.wait_status(vm_id, "RUNNING")
            api_times.append(time.perf_counter() - t0)
            breakdown.append(job_breakdown(api, body["id"]))
            api.call("POST", f"/api/v1/vms/{vm_id}/kill/")
            api.wait_status(vm_id, "STOPPED")  # the immediate status of a kill; then the job pulls the plug:
            wait_domstate(domain, "shut off")

            # Same domain (ovmweb left it defined, shut off), started by hand.
            time.sleep(SETTLE)
            t0 = time.perf_counter()
            virsh("start", domain)
            virsh_times.append(time.perf_counter() - t0)
            api.wait_status(vm_id, "RUNNING")  # the monitor follows the hand-made start
            t0 = time.perf_counter()
            virsh("destroy", domain)
            t1 = time.perf_counter()
            api.wait_status(vm_id, "STOPPED")  # seen by the monitor through libvirt's lifecycle event
            off_times.append(time.perf_counter() - t1)

            print(
                f"round {round_ + 1}: api {api_times[-1] * 1000:.0f} ms (job queued {breakdown[-1][0]:.0f} ms, "
                f"ran {breakdown[-1][1]:.0f} ms), virsh {virsh_times[-1] * 1000:.0f} ms",
                flush=True,
            )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "destroy", domain], capture_output=True)
        subprocess.run(["virsh", "-q", "-c", "qemu:///system", "undefine", domain], capture_output=True)
        from ovmweb.hypervisor.libvirt import LibvirtDriver
        from ovmweb.inventory.models import Repository
        from ovmweb.inventory.services.repositories import pool_name

        driver = LibvirtDriver("qemu:///system")
        for repo in Repository.objects.all():
            for part in ("disks", "isos", ""):
                driver.pool_undefine(pool_name(repo, part))
        driver.close()
        shutil.rmtree(TMP, ignore_errors=True)
    api_median, virsh_median = statistics.median(api_times), statistics.median(virsh_times)
    print(f"api start->RUNNING median: {api_median * 1000:.0f} ms ({', '.join(f'{t * 1000:.0f}' for t in api_times)})")
    print(f"virsh start median: {virsh_median * 1000:.0f} ms ({', '.join(f'{t * 1000:.0f}' for t in virsh_times)})")
    print(
        f"domain stopped outside ovmweb -> STOPPED in the API (monitor events, reconcile every "
        f"{os.environ.get('OVMWEB_RECONCILE_INTERVAL', '10')} s): median {statistics.median(off_times) * 1000:.0f} ms, "
        f"max {max(off_times) * 1000:.0f} ms"
    )
    print(f"ratio={api_median / virsh_median:.2f}")


if __name__ == "__main__":
    main()
