"""Faults of issue 3 on the real libvirtd: a full repository, a VM whose console
ports are taken. Each is a failed job with a clear message and nothing half made
(no domain, volume, record or port) left behind."""

import io
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from ovmweb.errors import DriverError
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import IsoFile, VirtualDisk, VirtualMachine
from ovmweb.inventory.services import ports, storage, vms
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import GUEST_ISO, make_repository

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024


@pytest.fixture
def small_repo(estate, tmp_path):
    """A repository on a 4 MiB tmpfs: really full, not pretend-full."""
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "ovmweb-test", str(path)], check=True)
    repo = None
    try:
        repo = make_repository(
            user=estate["user"], server=estate["server"], pool=estate["pool"], path=path, name="small"
        )
        yield repo
    finally:
        if repo is not None:
            driver = connections.driver_for(estate["server"])
            for part in ("disks", "isos", ""):
                driver.pool_undefine(pool_name(repo, part))
        subprocess.run(["umount", "-l", str(path)], check=True)


def _files(repo, sub):
    return sorted(p.name for p in (Path(repo.path) / sub).iterdir())


def test_iso_larger_than_the_repository_fails_and_leaves_nothing(estate, small_repo):
    with open(GUEST_ISO, "rb") as fh:
        job = storage.iso_upload(
            repository=small_repo, user=estate["user"], name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size
        )
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE"
    assert "is full" in job.error and "small" in job.error
    assert _files(small_repo, "ISOs") == []
    assert not IsoFile.objects.filter(repository=small_repo).exists()


def test_fully_allocated_disk_larger_than_the_repository_fails(estate, small_repo):
    job = storage.disk_create(user=estate["user"], repository=small_repo, name="big", size_bytes=64 * MIB, sparse=False)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "is full" in job.error
    assert _files(small_repo, "VirtualDisks") == []
    assert not VirtualDisk.objects.filter(name="big").exists()
    # A sparse disk of the same size fits: only its metadata is written.
    job = storage.disk_create(user=estate["user"], repository=small_repo, name="thin", size_bytes=64 * MIB, sparse=True)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    assert len(_files(small_repo, "VirtualDisks")) == 1


def test_upload_that_runs_out_of_space_midway_removes_the_volume(estate, small_repo):
    # Past the free-space check (another writer filled the disk meanwhile): the
    # driver's own cleanup must still leave no partial file.
    driver = connections.driver_for(estate["server"])
    data = b"x" * (6 * MIB)
    with pytest.raises(DriverError):
        driver.volume_upload(pool_name(small_repo, "isos"), "partial.iso", io.BytesIO(data), len(data))
    assert _files(small_repo, "ISOs") == []


def test_vm_whose_vnc_port_is_taken_fails_to_start_and_leaves_nothing(estate):
    vm = vms.vm_create(
        user=estate["user"],
        name=f"ports-{uuid.uuid4().hex[:6]}",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": estate["iso"]},
        boot_order=["cdrom"],
    )
    # The start job keeps ports already given to the VM on this server; learn them and take the VNC one.
    vnc_port, serial_port = ports.allocate_console_ports(vm=vm, server=estate["server"])
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", vnc_port))
    squatter.listen(1)
    try:
        job = vms.vm_action(vm=vm, action="start", user=estate["user"])
        run_pending_jobs()
    finally:
        squatter.close()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == "FAILURE"
    assert str(vnc_port) in job.error or "in use" in job.error.lower(), job.error
    assert vm.status == "STOPPED"
    assert vm.vnc_port is None and vm.serial_port is None
    driver = connections.driver_for(estate["server"])
    assert str(vm.uuid) not in {d.uuid for d in driver.list_domains()}, "failed start left a domain behind"
    # The serial port was not left bound by a half-started QEMU either.
    probe = socket.socket()
    probe.bind(("127.0.0.1", serial_port))
    probe.close()
    # With the port free again the same VM starts.
    vms.vm_action(vm=vm, action="start", user=estate["user"])
    run_pending_jobs()
    assert VirtualMachine.objects.get(pk=vm.pk).status == "RUNNING"
