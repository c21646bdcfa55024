"""The tiny guest booted for real through the services and jobs, on this machine's libvirtd."""
import socket
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from ovmweb.hypervisor import connections
from ovmweb.hypervisor.monitor import Monitor
from ovmweb.inventory.models import IsoFile, Repository, Server, VirtualMachine
from ovmweb.inventory.services import pools, repositories, servers, storage, vms
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.jobs.testing import run_pending_jobs

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
GUEST_ISO = Path(settings.BASE_DIR) / "var" / "guest" / "tiny.iso"


def _wait(predicate, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


@pytest.fixture
def estate(admin_user, tmp_path, settings):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    pool = pools.server_pool_create(user=admin_user, name=f"pool-{uuid.uuid4().hex[:6]}")
    servers.server_discover(user=admin_user, hostname="localhost", transport="local", name="local", server_pool=pool)
    run_pending_jobs()
    server = Server.objects.get(name="local")
    repo_path = tmp_path / "repo"
    repo_path.mkdir()
    repositories.repository_create(user=admin_user, name="repo", kind="LOCAL", path=str(repo_path), server=server,
                                   server_pools=[pool])
    run_pending_jobs()
    repo = Repository.objects.get(name="repo")
    with open(GUEST_ISO, "rb") as fh:
        storage.iso_upload(repository=repo, user=admin_user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size)
    run_pending_jobs()
    yield {"pool": pool, "server": server, "repo": repo, "iso": IsoFile.objects.get(repository=repo), "user": admin_user}
    driver = connections.driver_for(server)
    for vm in VirtualMachine.objects.all():
        driver.undefine(str(vm.uuid))
    for part in ("disks", "isos", ""):
        driver.pool_undefine(pool_name(repo, part))
    connections.close_all()


def test_discovery_and_repository_layout(estate):
    server = estate["server"]
    assert server.status == "RUNNING"
    assert server.domain_types == ["qemu"]  # KVM hangs on this machine: the probe must not claim it
    assert server.cpu_cores > 0 and server.libvirt_version.startswith("9.")
    repo = Path(estate["repo"].path)
    assert sorted(p.name for p in repo.iterdir()) == ["Assemblies", "ISOs", "Templates", "VirtualDisks", "VirtualMachines"]
    assert (repo / "ISOs" / "tiny.iso").stat().st_size == GUEST_ISO.stat().st_size
    assert estate["repo"].capacity_bytes > 0


def test_not_an_iso_fails_and_leaves_nothing(estate, tmp_path):
    bogus = tmp_path / "bogus.iso"
    bogus.write_bytes(b"\0" * 70000)
    with open(bogus, "rb") as fh:
        job = storage.iso_upload(repository=estate["repo"], user=estate["user"], name="bogus.iso", fileobj=fh, size=70000)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "not an ISO" in job.error
    assert not (Path(estate["repo"].path) / "ISOs" / "bogus.iso").exists()
    assert not IsoFile.objects.filter(name="bogus.iso").exists()


def test_missing_repository_path_fails_and_leaves_nothing(estate, tmp_path):
    job = repositories.repository_create(user=estate["user"], name="nowhere", kind="LOCAL", path=str(tmp_path / "missing"),
                                         server=estate["server"])
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "No such file" in job.error
    assert not Repository.objects.filter(name="nowhere").exists()
    assert not (tmp_path / "missing").exists()


def test_boot_banner_suspend_resume_and_guest_poweroff(estate):
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    vm = vms.vm_create(user=estate["user"], name=name, server_pool=estate["pool"], repository=estate["repo"], domain_type="HVM",
                       os_type="OTHER_LINUX", memory_mib=256, max_memory_mib=256, source={"kind": "iso", "iso": estate["iso"]},
                       boot_order=["cdrom", "disk"])
    monitor = Monitor(interval=5, offline_after=30)
    monitor.start()
    try:
        vms.vm_action(vm=vm, action="start", user=estate["user"])
        run_pending_jobs()
        vm.refresh_from_db()
        assert vm.status == "RUNNING", vm.status
        sock = socket.create_connection(("127.0.0.1", vm.serial_port), timeout=120)
        buffer = b""
        while b"ovmweb tiny guest" not in buffer:
            chunk = sock.recv(4096)
            assert chunk, buffer[-500:]
            buffer += chunk
        vms.vm_action(vm=vm, action="suspend", user=estate["user"])
        run_pending_jobs()
        vm.refresh_from_db()
        assert vm.status == "SUSPENDED"
        vms.vm_action(vm=vm, action="resume", user=estate["user"])
        run_pending_jobs()
        vm.refresh_from_db()
        assert vm.status == "RUNNING"
        time.sleep(2)  # the shell prompt is up after the banner
        sock.sendall(b"\npoweroff\n")
        assert _wait(lambda: VirtualMachine.objects.get(pk=vm.pk).status == "STOPPED", 60)
        sock.close()
    finally:
        monitor.stop()
