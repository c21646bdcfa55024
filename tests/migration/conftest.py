"""Two real hypervisor servers on this machine (scripts/two-servers.sh), discovered over
SSH into one server pool with a shared repository, and the tiny guest's serial console
reached through ovmweb's own SSH tunnels."""

import json
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from ovmweb.hypervisor import connections
from ovmweb.inventory.models import IsoFile, Repository, Server, VirtualMachine
from ovmweb.inventory.services import pools, repositories, servers, storage, vms
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels import pool as tunnel_pool

BASE_DIR = Path(django_settings.BASE_DIR)
SCRIPT = BASE_DIR / "scripts" / "two-servers.sh"
GUEST_ISO = BASE_DIR / "var" / "guest" / "tiny.iso"


def two_servers(command: str) -> None:
    # The endpoints file lives in the checkout's var/, whatever the test settings' VAR_DIR.
    subprocess.run(
        ["bash", str(SCRIPT), command],
        check=True,
        stdout=subprocess.DEVNULL,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OVMWEB_VAR_DIR": str(BASE_DIR / "var")},
    )


@pytest.fixture(scope="module")
def endpoints():
    """Servers a and b up for the module, down (nothing left) after it."""
    subprocess.run(["bash", str(BASE_DIR / "scripts" / "build-tiny-guest.sh")], check=True, stdout=subprocess.DEVNULL)
    two_servers("up")
    try:
        yield json.loads((BASE_DIR / "var" / "two-servers" / "servers.json").read_text())
    finally:
        connections.close_all()
        tunnel_pool.close_all()
        two_servers("down")


def ok(job):
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    return job


def discover(*, user, endpoints, key: str, pool) -> Server:
    side = endpoints[key]
    ok(
        servers.server_discover(
            user=user,
            hostname=side["hostname"],
            transport="ssh",
            ssh_port=side["ssh_port"],
            ssh_user="root",
            private_key=Path(endpoints["private_key"]).read_text(),
            host_key_fingerprint=side["fingerprint"],
            name=side["name"],
            server_pool=pool,
        )
    )
    return Server.objects.get(name=side["name"])


@pytest.fixture
def estate(admin_user, endpoints, settings):
    """Pool with servers a and b (SSH, pinned keys), a shared repository presented to the
    pool (same directory on both), the tiny guest's ISO in it."""
    yield from build_estate(admin_user, endpoints, settings)


def build_estate(admin_user, endpoints, settings):
    """The ``estate`` fixture's body, for modules that bring up servers of their own (tests/ha)."""
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    shared = Path(endpoints["shared_path"]) / uuid.uuid4().hex[:8]
    shared.mkdir()
    pool = pools.server_pool_create(user=admin_user, name=f"mig-{uuid.uuid4().hex[:6]}")
    a = discover(user=admin_user, endpoints=endpoints, key="a", pool=pool)
    b = discover(user=admin_user, endpoints=endpoints, key="b", pool=pool)
    job = ok(
        repositories.repository_create(
            user=admin_user, name="shared", kind="SHARED", path=str(shared), server_pools=[pool]
        )
    )
    repo = Repository.objects.get(pk=job.target_id)
    with open(GUEST_ISO, "rb") as fh:
        ok(
            storage.iso_upload(
                repository=repo, user=admin_user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size
            )
        )
    iso = IsoFile.objects.get(repository=repo, name="tiny.iso")
    yield {"pool": pool, "a": a, "b": b, "repo": repo, "iso": iso, "user": admin_user, "endpoints": endpoints}
    for vm in VirtualMachine.objects.all():
        for server in (a, b):
            try:
                connections.driver_for(server).destroy(str(vm.uuid))
            except Exception:  # absent there: nothing to clean
                pass
            try:
                connections.driver_for(server).undefine(str(vm.uuid))
            except Exception:
                pass
    connections.close_all()
    tunnel_pool.close_all()


def make_vm(estate, *, name=None, memory_mib=256, iso=None, with_disk=True, **fields) -> VirtualMachine:
    """The tiny guest (PVHVM: virtio disk, boots its ISO) with an empty disk in the shared repository."""
    disks = [{"new": {"name": "data", "size_bytes": 32 << 20, "repository": estate["repo"]}}] if with_disk else []
    vm = vms.vm_create(
        user=estate["user"],
        name=name or f"mig-{uuid.uuid4().hex[:6]}",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=memory_mib,
        max_memory_mib=memory_mib,
        source={"kind": "iso", "iso": iso or estate["iso"]},
        disks=disks,
        boot_order=["cdrom", "disk"],
        **fields,
    )
    run_pending_jobs()
    return vm


def start_on(estate, vm, server) -> VirtualMachine:
    ok(vms.vm_action(vm=vm, action="start", user=estate["user"], server_id=server.pk))
    vm.refresh_from_db()
    assert vm.status == "RUNNING" and vm.server_id == server.pk
    return vm


class SerialShell:
    """The guest's root shell on its serial console, through the SSH tunnel of the server
    it runs on (the port listens on 127.0.0.1 inside that server)."""

    def __init__(self, server, port: int):
        self.channel = tunnel_pool.open_direct_tcpip(server, port)
        self.channel.settimeout(0.5)
        self.buffer = b""

    def _read_until(self, pattern: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.buffer, re.S)
            if match:
                self.buffer = self.buffer[match.end() :]
                return match.group(1) if match.groups() else match.group(0)
            try:
                chunk = self.channel.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                continue
            assert chunk, f"serial console closed: {self.buffer[-400:]!r}"
            self.buffer += chunk
        raise AssertionError(f"no {pattern!r} on the serial console: {self.buffer[-600:]!r}")

    def wait_for_shell(self, timeout: float = 180) -> None:
        # The banner goes by once; a shell that answers is what counts (also on reconnect).
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.run("true", timeout=3)
                return
            except AssertionError:
                if time.monotonic() > deadline:
                    raise

    def run(self, command: str, timeout: float = 30) -> str:
        token = uuid.uuid4().hex[:8]
        # The quotes keep the echoed command line from containing the markers.
        self.channel.sendall(f'\n echo "B""{token}"; {command}; echo "E""{token}"\n'.encode())
        out = self._read_until(b"B" + token.encode() + b"\r?\n(.*?)E" + token.encode(), timeout)
        return out.decode(errors="replace").replace("\r", "").strip()

    def close(self) -> None:
        self.channel.close()


class StatusWatcher(threading.Thread):
    """Every status the VM's row shows while a job runs, read on a connection of its own."""

    def __init__(self, vm_id: int):
        super().__init__(daemon=True)
        self.vm_id, self.seen, self.servers = vm_id, [], []
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                row = VirtualMachine.objects.filter(pk=self.vm_id).values("status", "server_id").first()
                if row and (not self.seen or (row["status"], row["server_id"]) != (self.seen[-1], self.servers[-1])):
                    self.seen.append(row["status"])
                    self.servers.append(row["server_id"])
                time.sleep(0.02)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
