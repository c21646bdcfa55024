"""Shared fixtures of the integration tests: this machine's libvirtd, the loopback
sshd of scripts/start-services.sh, and the tiny guest of scripts/build-tiny-guest.sh."""

import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from ovmweb.hypervisor import connections
from ovmweb.inventory.models import IsoFile, Repository, Server, VirtualMachine
from ovmweb.inventory.services import pools, repositories, servers, storage
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.jobs.testing import run_pending_jobs

SSH_DIR = Path(django_settings.BASE_DIR) / "var" / "ssh"
GUEST_ISO = Path(django_settings.BASE_DIR) / "var" / "guest" / "tiny.iso"


def wait_for(predicate, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ssh_access():
    """How to reach the loopback sshd as root: port, pinned fingerprint, private key text."""
    return {
        "port": int((SSH_DIR / "port").read_text()),
        "fingerprint": (SSH_DIR / "host_fingerprint").read_text().strip(),
        "host_key": " ".join((SSH_DIR / "ssh_host_ed25519_key.pub").read_text().split()[:2]),
        "private_key": (SSH_DIR / "id_ed25519").read_text(),
    }


@pytest.fixture
def real_hypervisor(settings):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    # Console ports of this test's own: other guests on this shared machine (other
    # test databases, `make run`) hold 10000+n and 7900+n already.
    settings.OVMWEB_VNC_PORT_BASE, settings.OVMWEB_SERIAL_PORT_BASE = free_port(), free_port()
    yield
    connections.close_all()


def _cleanup(repos):
    """Undefine this test's domains and pools (other tests share the libvirtd; every
    server of these tests is this machine, whatever its transport)."""
    from ovmweb.hypervisor.libvirt import LibvirtDriver

    driver = LibvirtDriver("qemu:///system")
    try:
        for vm in VirtualMachine.objects.all():
            driver.undefine(str(vm.uuid))
        for repo in repos:
            for part in ("disks", "isos", ""):
                driver.pool_undefine(pool_name(repo, part))
    finally:
        driver.close()


def make_repository(*, user, server, pool, path: Path, name="repo") -> Repository:
    path.mkdir(exist_ok=True)
    job = repositories.repository_create(
        user=user, name=name, kind="LOCAL", path=str(path), server=server, server_pools=[pool]
    )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    return Repository.objects.get(pk=job.target_id) if job.target_id else Repository.objects.get(name=name)


def upload_guest_iso(*, user, repo) -> IsoFile:
    with open(GUEST_ISO, "rb") as fh:
        job = storage.iso_upload(repository=repo, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    return IsoFile.objects.get(repository=repo, name="tiny.iso")


@pytest.fixture
def estate(admin_user, tmp_path, real_hypervisor):
    """A pool with the local server (transport ``local``), a repository and the tiny guest's ISO."""
    pool = pools.server_pool_create(user=admin_user, name=f"pool-{uuid.uuid4().hex[:6]}")
    servers.server_discover(user=admin_user, hostname="localhost", transport="local", name="local", server_pool=pool)
    run_pending_jobs()
    server = Server.objects.get(name="local")
    repo = make_repository(user=admin_user, server=server, pool=pool, path=tmp_path / "repo")
    iso = upload_guest_iso(user=admin_user, repo=repo)
    yield {"pool": pool, "server": server, "repo": repo, "iso": iso, "user": admin_user}
    _cleanup(list(Repository.objects.all()))


@pytest.fixture
def cleanup_all():
    """Undefine whatever domains and pools the test's database knows of, at teardown."""
    yield
    _cleanup(list(Repository.objects.all()))


def start_sshd(tmp_path: Path, *, port: int, wrap: list[str] | None = None) -> subprocess.Popen:
    """A second sshd (same host key and authorized keys as the main one) on ``port``,
    optionally run under ``wrap`` (e.g. a mount namespace without libvirt's socket)."""
    config = tmp_path / f"sshd-{port}.conf"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {SSH_DIR / 'ssh_host_ed25519_key'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nPubkeyAuthentication yes\n"
        f"AllowTcpForwarding yes\nPidFile {tmp_path / f'sshd-{port}.pid'}\nSubsystem sftp internal-sftp\nUsePAM no\n"
    )
    proc = subprocess.Popen(
        [*(wrap or []), "/usr/sbin/sshd", "-D", "-e", "-f", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            return False

    assert wait_for(listening, 10), "second sshd did not start"
    return proc


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def tiny_vm(estate, prefix: str, **fields) -> VirtualMachine:
    """An HVM VM of the tiny guest's ISO in ``estate`` (256 MiB, booting from the CD), not started."""
    from ovmweb.inventory.services import vms

    options = {
        "name": f"{prefix}-{uuid.uuid4().hex[:6]}",
        "server_pool": estate["pool"],
        "repository": estate["repo"],
        "domain_type": "HVM",
        "os_type": "OTHER_LINUX",
        "memory_mib": 256,
        "max_memory_mib": 256,
        "source": {"kind": "iso", "iso": estate["iso"]},
        "boot_order": ["cdrom", "disk"],
        **fields,
    }
    return vms.vm_create(user=estate["user"], **options)


def started(estate, vm: VirtualMachine) -> VirtualMachine:
    """``vm`` started through its job, and RUNNING."""
    from ovmweb.inventory.services import vms

    vms.vm_action(vm=vm, action="start", user=estate["user"])
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING", vm.status
    return vm
