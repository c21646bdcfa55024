import contextlib
import functools
import http.server
import random
import shutil
import socket
import threading
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests import factories as f


@pytest.fixture
def user(db):
    return f.SuperUserFactory()


@pytest.fixture
def pool(db):
    return f.ServerPoolFactory()


@pytest.fixture
def repo(pool):
    return f.RepositoryFactory(server_pools=[pool])


@pytest.fixture
def server(pool):
    return f.ServerFactory(server_pool=pool)


@pytest.fixture
def vm(pool, repo):
    return f.VirtualMachineFactory(server_pool=pool, repository=repo)


@pytest.fixture
def libvirt_test_driver(settings):
    """Every server reached through libvirt's in-process test:///default driver. Not
    autouse: modules opt in with ``pytestmark``, and a test that also takes
    ``real_estate`` must not, since that points the URI at this machine's libvirtd."""
    from ovmweb.hypervisor.connections import close_all

    settings.OVMWEB_HYPERVISOR_URI = "test:///default"
    yield
    # Cached connections would carry the test driver's state into the next test.
    close_all()


def run_concurrently(fn, args_list):
    """Run fn(*args) in one thread each, all released at the same moment; returns
    [(result, exception)] in order. Every thread closes its own DB connection."""
    barrier = threading.Barrier(len(args_list))
    results = [None] * len(args_list)

    def worker(i, args):
        try:
            barrier.wait()
            results[i] = (fn(*args), None)
        except Exception as exc:  # collected for the test to assert on
            results[i] = (None, exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, a)) for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


# ---------------------------------------------------------------------------
# Real components: a loopback HTTP server, this machine's libvirtd, the tiny guest
# ---------------------------------------------------------------------------

GUEST_DIR = Path(settings.BASE_DIR) / "var" / "guest"
SSH_DIR = Path(settings.BASE_DIR) / "var" / "ssh"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@contextlib.contextmanager
def http_tree(directory: Path):
    """Serve ``directory`` on a loopback port in a thread; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def install_tree(tmp_path):
    """The tiny guest's kernel and initrd laid out like an Oracle Linux install tree."""
    tree = tmp_path / "tree"
    (tree / "images" / "pxeboot").mkdir(parents=True)
    shutil.copy(GUEST_DIR / "vmlinuz", tree / "images" / "pxeboot" / "vmlinuz")
    shutil.copy(GUEST_DIR / "initrd.gz", tree / "images" / "pxeboot" / "initrd.img")
    return tree


@pytest.fixture
def ssh_access():
    return {
        "port": int((SSH_DIR / "port").read_text()),
        "fingerprint": (SSH_DIR / "host_fingerprint").read_text().strip(),
        "private_key": (SSH_DIR / "id_ed25519").read_text(),
    }


@pytest.fixture
def real_estate(user, tmp_path, settings):
    """This machine's libvirtd as the local server of a fresh pool, with a local repository."""
    from ovmweb.hypervisor import connections
    from ovmweb.inventory.models import Repository, Server
    from ovmweb.inventory.services import pools, repositories, servers
    from ovmweb.jobs.testing import run_pending_jobs

    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    # Other test runs share this libvirtd and hold 10000/7900: use free bases.
    settings.OVMWEB_VNC_PORT_BASE, settings.OVMWEB_SERIAL_PORT_BASE = free_port_bases()
    pool = pools.server_pool_create(user=user, name=f"pool-{uuid.uuid4().hex[:6]}")
    servers.server_discover(user=user, hostname="localhost", transport="local", name="local", server_pool=pool)
    run_pending_jobs()
    server = Server.objects.get(name="local")
    path = tmp_path / "repo"
    path.mkdir()
    job = repositories.repository_create(
        user=user, name="repo", kind="LOCAL", path=str(path), server=server, server_pools=[pool]
    )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    repo = Repository.objects.get(name="repo")
    yield {"pool": pool, "server": server, "repo": repo, "user": user}
    _undefine_everything()
    connections.close_all()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_bases(count: int = 4) -> tuple[int, int]:
    """VNC and serial port bases with ``count`` free ports each (random, within libvirt's
    5900-65535 display range)."""
    rng = random.Random()
    for _attempt in range(200):
        vnc, serial = rng.randrange(20000, 40000), rng.randrange(40000, 60000)
        if all(_port_free(vnc + i) and _port_free(serial + i) for i in range(count)):
            return vnc, serial
    raise AssertionError("no free console ports on this machine")


def _undefine_everything():
    """Undefine the domains and pools this test's database knows of (libvirtd is shared)."""
    from ovmweb.hypervisor.libvirt import LibvirtDriver
    from ovmweb.inventory.models import Repository, VirtualMachine
    from ovmweb.inventory.services.repositories import pool_name

    driver = LibvirtDriver("qemu:///system")
    try:
        for vm in VirtualMachine.objects.all():
            driver.undefine(str(vm.uuid))
        for repo in Repository.objects.all():
            for part in ("disks", "isos", ""):
                driver.pool_undefine(pool_name(repo, part))
    finally:
        driver.close()


def read_serial_until(port: int, needle: bytes, timeout: float = 120) -> bytes:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    buffer = b""
    try:
        while needle not in buffer:
            chunk = sock.recv(4096)
            assert chunk, buffer[-500:]
            buffer += chunk
    finally:
        sock.close()
    return buffer
