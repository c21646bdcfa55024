"""The tiny guest booted for real through the services and jobs, on this machine's libvirtd."""

import socket
import time
from pathlib import Path

import pytest

from ovmweb.inventory.models import IsoFile, Repository, VirtualMachine
from ovmweb.inventory.services import repositories, storage, vms
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.monitor.service import Monitor

from .conftest import GUEST_ISO, tiny_vm, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_discovery_and_repository_layout(estate):
    server = estate["server"]
    assert server.status == "RUNNING"
    assert server.domain_types == ["qemu"]  # KVM hangs on this machine: the probe must not claim it
    assert server.cpu_cores > 0 and server.libvirt_version.startswith("9.")
    repo = Path(estate["repo"].path)
    assert sorted(p.name for p in repo.iterdir()) == [
        "Assemblies",
        "ISOs",
        "Templates",
        "VirtualDisks",
        "VirtualMachines",
    ]
    assert (repo / "ISOs" / "tiny.iso").stat().st_size == GUEST_ISO.stat().st_size
    assert estate["repo"].capacity_bytes > 0


def test_not_an_iso_fails_and_leaves_nothing(estate, tmp_path):
    bogus = tmp_path / "bogus.iso"
    bogus.write_bytes(b"\0" * 70000)
    with open(bogus, "rb") as fh:
        job = storage.iso_upload(
            repository=estate["repo"], user=estate["user"], name="bogus.iso", fileobj=fh, size=70000
        )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "not an ISO" in job.error
    assert not (Path(estate["repo"].path) / "ISOs" / "bogus.iso").exists()
    assert not IsoFile.objects.filter(name="bogus.iso").exists()


def test_missing_repository_path_fails_and_leaves_nothing(estate, tmp_path):
    job = repositories.repository_create(
        user=estate["user"], name="nowhere", kind="LOCAL", path=str(tmp_path / "missing"), server=estate["server"]
    )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "No such file" in job.error
    assert not Repository.objects.filter(name="nowhere").exists()
    assert not (tmp_path / "missing").exists()


def test_boot_banner_suspend_resume_and_guest_poweroff(estate):
    vm = tiny_vm(estate, "tiny")
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
        assert wait_for(lambda: VirtualMachine.objects.get(pk=vm.pk).status == "STOPPED", 60)
        sock.close()
    finally:
        monitor.stop()
