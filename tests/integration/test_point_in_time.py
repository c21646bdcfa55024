"""Clones and backups are point-in-time copies (real libvirtd + QEMU): what the source
writes after the copy was taken never shows in the copy.

- A stopped VM's thin clone stands on a frozen read-only base, not on the source's disk.
- A running VM's hot clone (a backup) is made by libvirt's backup job: marker A written
  before is in the copy, marker B written while the job runs or after is not, and the
  running VM's disk is left as it was (one image, no backing chain added).
- Deleting VMs deletes their disks, and a base goes only with its last clone."""

import json
import os
import subprocess
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ovmweb.errors import Conflict
from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.inventory.models import VirtualDisk, VirtualMachine
from ovmweb.inventory.services import disk_copies, storage, vm_copies, vms
from ovmweb.jobs.testing import run_pending_jobs

from .guest_console import GuestConsole
from .guest_disk import disk_image, read_marker, write_marker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024


def _vm(estate, *, size=64 * MIB) -> VirtualMachine:
    vm = vms.vm_create(
        user=estate["user"],
        name=f"pit-{uuid.uuid4().hex[:6]}",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=256,
        max_memory_mib=256,
        source={"kind": "iso", "iso": estate["iso"]},
        boot_order=["cdrom", "disk"],
        disks=[{"new": {"name": "data", "size_bytes": size}, "bus": "virtio"}],
    )
    run_pending_jobs()
    return vm


def _job(job):
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "SUCCESS", job.error
    return job


def _disk(vm: VirtualMachine) -> VirtualDisk:
    return vm.disk_slots.get(kind="DISK").virtual_disk


def _qemu_io(image: Path, command: str) -> str:
    out = subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, str(image)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _qemu_io_ro(image: Path, command: str) -> str:
    out = subprocess.run(
        ["qemu-io", "-U", "-r", "-f", "qcow2", "-c", command, str(image)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_stopped_thin_clone_does_not_see_the_sources_later_writes(estate):
    source = _vm(estate)
    disk = _disk(source)
    path_before = disk_image(disk)
    _qemu_io(path_before, "write -P 0x5a 0 64k")  # data from before the clone
    thin = storage.disk_clone(disk=disk, target_repository=estate["repo"], clone_type="THIN", name="thin")
    disk.refresh_from_db()
    base = thin.backing_disk
    assert base.thin_base and disk.backing_disk == base and base.thin_clones.count() == 2
    assert os.stat(disk_image(base)).st_mode & 0o777 == 0o444
    # The source writes after the clone was taken: the clone does not see it.
    _qemu_io(disk_image(disk), "write -P 0x41 0 64k")
    assert "Pattern verification failed" not in _qemu_io(disk_image(thin), "read -P 0x5a 0 64k")
    assert "Pattern verification failed" not in _qemu_io(disk_image(disk), "read -P 0x41 0 64k")
    # The base stays while something stands on it; it goes with its last child.
    with pytest.raises(Conflict, match="thin clones"):
        storage.disk_delete(disk=base, user=estate["user"])
    _job(storage.disk_delete(disk=thin, user=estate["user"]))
    assert VirtualDisk.objects.filter(pk=base.pk).exists()  # the source still stands on it
    result = _job(vms.vm_delete(vm=source, user=estate["user"])).result
    assert disk.name in result["deleted_disks"] and base.name in result["deleted_disks"]
    assert not disk_image(base).exists() and not disk_image(disk).exists()


def test_flatten_makes_a_thin_clone_standalone_and_frees_the_base(estate):
    source = _vm(estate)
    disk = _disk(source)
    _qemu_io(disk_image(disk), "write -P 0x5a 0 64k")
    thin = storage.disk_clone(disk=disk, target_repository=estate["repo"], clone_type="THIN", name="thin")
    base = thin.backing_disk
    _job(disk_copies.disk_flatten(disk=thin, user=estate["user"]))
    _job(disk_copies.disk_flatten(disk=_disk(source), user=estate["user"]))
    thin.refresh_from_db()
    assert thin.backing_disk is None and not VirtualDisk.objects.filter(pk=base.pk).exists()
    assert not disk_image(base).exists()
    assert "Pattern verification failed" not in _qemu_io(disk_image(thin), "read -P 0x5a 0 64k")


def _run_jobs() -> None:
    from django.db import connection

    try:
        run_pending_jobs()
    finally:
        connection.close()


def _wait_backup_begun(vm: VirtualMachine, job) -> None:
    """Until the domain has a backup file being written, or the job is over."""
    prefix = f"{vm.repository.path}/VirtualDisks/"
    before = set(os.listdir(prefix))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status not in ("QUEUED", "RUNNING") or set(os.listdir(prefix)) - before:
            return
        time.sleep(0.05)


def _domain_disk_sources(vm: VirtualMachine) -> tuple[list[str], int]:
    driver = LibvirtDriver("qemu:///system")
    try:
        root = ET.fromstring(driver.domain_xml(str(vm.uuid)))
    finally:
        driver.close()
    disk = root.find("./devices/disk[@device='disk']")
    return [disk.find("source").get("file")], len(disk.findall(".//backingStore/source"))


def test_hot_clone_of_a_running_vm_is_the_disk_when_taken(estate):
    vm = _vm(estate, size=320 * MIB)
    disk = _disk(vm)
    # Data for the backup job to copy (so that it runs a while): 128 MiB from 1 MiB on.
    _qemu_io(disk_image(disk), "write -P 0x5a 1M 128M")
    vms.vm_action(vm=vm, action="start", user=estate["user"])
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING", vm.status
    console = GuestConsole(vm.serial_port)
    try:
        console.wait_for_shell()
        write_marker(console, "vda", "marker-A", sector=1)
        job = vm_copies.vm_backup(vm=vm, user=estate["user"])
        assert [d["clone_type"] for d in job.params["disks"]] == ["THIN"]  # the seed's rule (7.6)
        runner = threading.Thread(target=_run_jobs)
        runner.start()
        # B (and X over A) are written once the backup job has begun, while it may still run.
        _wait_backup_begun(vm, job)
        write_marker(console, "vda", "marker-B", sector=2)
        write_marker(console, "vda", "marker-X", sector=1)
        runner.join(600)
        _job(job)
    finally:
        console.close()
    copy = job.target.disk_slots.get(kind="DISK").virtual_disk
    assert copy.backing_disk is None and copy.format == "qcow2"
    image = disk_image(copy)
    assert read_marker(image, 8, sector=1) == b"marker-A"
    assert read_marker(image, 8, sector=2) != b"marker-B"
    info = json.loads(
        subprocess.run(["qemu-img", "info", "-U", "--output=json", str(image)], capture_output=True, text=True).stdout
    )
    # A standalone, sparse copy: the data, not the 320 MiB of the disk.
    assert "backing-filename" not in info and info["virtual-size"] == 320 * MIB
    assert 128 * MIB <= info["actual-size"] < 192 * MIB
    assert "Pattern verification failed" not in _qemu_io_ro(image, "read -P 0x5a 1M 128M")
    # The running VM still writes to its one image, the definition unchanged by the copy.
    sources, backing = _domain_disk_sources(vm)
    assert sources == [str(disk_image(disk))] and backing == 0
    assert read_marker(disk_image(disk), 8, sector=2) == b"marker-B"
    assert read_marker(disk_image(disk), 8, sector=1) == b"marker-X"
    vms.vm_action(vm=vm, action="kill", user=estate["user"])
    run_pending_jobs()
