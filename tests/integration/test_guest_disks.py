"""The tiny guest sees its data disks on every bus ovmweb offers (SATA and IDE for HVM,
virtio for PVHVM), and what it writes there reaches the disk's image on the host."""

import uuid

import pytest

from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services import vms
from ovmweb.jobs.testing import run_pending_jobs

from .guest_console import GuestConsole
from .guest_disk import disk_image, guest_partitions, read_marker, read_marker_in_guest, write_marker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024


def _create(estate, *, domain_type: str, disks: list[tuple[str, int]]) -> VirtualMachine:
    vm = vms.vm_create(
        user=estate["user"],
        name=f"disks-{uuid.uuid4().hex[:6]}",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type=domain_type,
        os_type="OTHER_LINUX",
        memory_mib=256,
        max_memory_mib=256,
        source={"kind": "iso", "iso": estate["iso"]},
        boot_order=["cdrom", "disk"],
        disks=[{"new": {"name": f"data-{bus}", "size_bytes": size}, "bus": bus} for bus, size in disks],
    )
    run_pending_jobs()  # the new disks' volumes
    return vm


def _action(vm: VirtualMachine, action: str, user) -> None:
    vms.vm_action(vm=vm, action=action, user=user)
    run_pending_jobs()
    vm.refresh_from_db()


def _check_disks(estate, *, domain_type: str, disks: list[tuple[str, int]]) -> None:
    """Each disk (told apart by its size) is a block device in the guest; a marker written on
    it is read back in the guest and, after the VM stopped, from the host's image."""
    vm = _create(estate, domain_type=domain_type, disks=disks)
    _action(vm, "start", estate["user"])
    assert vm.status == "RUNNING", vm.status
    console = GuestConsole(vm.serial_port)
    markers = {}
    try:
        console.wait_for_shell()
        partitions = guest_partitions(console)
        by_size = {kib: name for name, kib in partitions.items()}
        for bus, size in disks:
            device = by_size.get(size // 1024)
            assert device, f"no {bus} disk of {size // 1024} KiB in the guest's /proc/partitions: {partitions}"
            assert device.startswith("vd" if bus == "virtio" else "sd"), (bus, device)
            markers[bus] = f"ovmweb-{bus}-{uuid.uuid4().hex}"
            write_marker(console, device, markers[bus])
            assert read_marker_in_guest(console, device, len(markers[bus])) == markers[bus]
    finally:
        console.close()
    _action(vm, "stop", estate["user"])
    assert vm.status == "STOPPED", vm.status
    for slot in vm.disk_slots.filter(kind="DISK").select_related("virtual_disk"):
        marker = markers[slot.bus]
        assert read_marker(disk_image(slot.virtual_disk), len(marker)) == marker.encode(), slot.bus


def test_hvm_guest_sees_sata_and_ide_disks(estate):
    _check_disks(estate, domain_type="HVM", disks=[("sata", 64 * MIB), ("ide", 96 * MIB)])


def test_pvhvm_guest_sees_virtio_disk(estate):
    _check_disks(estate, domain_type="PVHVM", disks=[("virtio", 80 * MIB)])
