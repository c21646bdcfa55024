"""Hot-plug of VNICs, disks and CD-ROM media (seed 7.4, 7.14): the rules on the service,
the fallback when the hypervisor cannot hot-plug (libvirt's test:///default has no
attach API), and the real thing on the tiny guest under this machine's QEMU."""

import socket
import time
import xml.etree.ElementTree as ET

import pytest

from ovmweb.errors import Conflict
from ovmweb.hypervisor import xml as xmlbuild
from ovmweb.hypervisor.base import DiskSpec, NicSpec
from ovmweb.hypervisor.connections import driver_for
from ovmweb.inventory.choices import DiskSlotKind, VmStatus
from ovmweb.inventory.models import VirtualDisk, VmDiskSlot, Vnic
from ovmweb.inventory.services import storage, vm_devices, vms, vnics
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

from .conftest import GUEST_DIR


def test_device_xml_builders():
    assert xmlbuild.next_disk_target("virtio", {"vda", "vdb", "sda"}) == "vdc"
    disk = ET.fromstring(xmlbuild.disk_device_xml(DiskSpec(path="/r/VirtualDisks/x.qcow2"), bus="virtio", target="vdb"))
    assert disk.find("source").get("file") == "/r/VirtualDisks/x.qcow2" and disk.find("target").get("dev") == "vdb"
    nic = ET.fromstring(xmlbuild.nic_device_xml(NicSpec(mac="00:21:f6:00:00:09", model="virtio"), domain_type="HVM"))
    # An HVM guest has no paravirtual drivers: the hot-added NIC is emulated, as at define time.
    assert nic.find("model").get("type") == "e1000" and nic.find("mac").get("address") == "00:21:f6:00:00:09"


def test_attach_to_stopped_vm_needs_no_job(vm, user):
    vm.domain_type = "PVHVM"
    vm.save()
    disk = f.VirtualDiskFactory(repository=vm.repository)
    slot = vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=disk)
    assert (slot.slot, slot.bus, slot.kind) == (0, "virtio", DiskSlotKind.DISK)
    assert not Job.objects.exists()
    with pytest.raises(Conflict, match="already attached"):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=disk)
    vm_devices.vm_disk_detach(slot=slot, user=user)
    assert not VmDiskSlot.objects.filter(vm=vm).exists()


def test_attach_rules(vm, user, pool):
    vm.domain_type = "PVHVM"
    vm.save()
    disk = f.VirtualDiskFactory(repository=vm.repository)
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="paravirtual"):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=disk, bus="sata")
    other = f.VirtualMachineFactory(server_pool=pool, repository=vm.repository)
    vm_devices.vm_disk_attach(vm=other, user=user, virtual_disk=disk, bus="sata")
    with pytest.raises(Conflict, match="not shareable"):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=disk)
    unseen = f.VirtualDiskFactory()  # a repository presented to no pool of this VM
    with pytest.raises(ValidationError, match="cannot see"):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=unseen)


@pytest.mark.parametrize("status", [VmStatus.SUSPENDED, VmStatus.STARTING])
def test_no_device_changes_while_suspended_or_in_transition(vm, user, status):
    vm.status = status
    vm.save()
    with pytest.raises(Conflict, match=str(status)):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=f.VirtualDiskFactory(repository=vm.repository))
    assert not vm.disk_slots.exists()


def test_windows_without_pv_drivers_cannot_hot_plug_disks(vm, user, server):
    vm.status, vm.server, vm.os_type, vm.domain_type = VmStatus.RUNNING, server, "WINDOWS", "PVHVM"
    vm.save()
    with pytest.raises(Conflict, match="Paravirtual Drivers"):
        vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=f.VirtualDiskFactory(repository=vm.repository))
    vm.pv_drivers_installed = True
    vm.save()
    vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=f.VirtualDiskFactory(repository=vm.repository))
    assert Job.objects.get().operation == "vm.hot_update"


def test_solaris_x86_cannot_eject_a_running_cdrom(vm, user, server):
    vm.status, vm.server, vm.os_type = VmStatus.RUNNING, server, "SOLARIS_X86"
    vm.save()
    slot = f.CdromSlotFactory(vm=vm, slot=1)
    with pytest.raises(Conflict, match="CD-ROM"):
        vm_devices.vm_disk_detach(slot=slot, user=user)
    assert VmDiskSlot.objects.get(pk=slot.pk).kind == DiskSlotKind.CDROM


def test_hypervisor_without_hot_plug_fails_the_job_and_keeps_the_change(libvirt_test_driver, vm, user, pool, server):
    vm.domain_type, vm.memory_mib, vm.max_memory_mib = "PVHVM", 256, 256
    vm.save()
    vms.vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.RUNNING
    vnic = vnics.vnic_create(vm=vm, user=user, network=None)
    run_pending_jobs()
    job = Job.objects.filter(operation="vm.hot_update").get()
    assert job.status == JobStatus.FAILURE
    assert "takes effect at its next start" in job.error and vnic.mac in job.error
    assert Vnic.objects.filter(pk=vnic.pk).exists()


# ---------------------------------------------------------------------------
# The real thing: the tiny guest under QEMU
# ---------------------------------------------------------------------------


class Serial:
    """The guest's serial console: one TCP connection kept for the whole test."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buffer = b""

    def until(self, needle: bytes, timeout: float = 120) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            assert time.monotonic() < deadline, self.buffer[-800:]
            self.sock.settimeout(max(deadline - time.monotonic(), 0.1))
            chunk = self.sock.recv(4096)
            assert chunk, self.buffer[-800:]
            self.buffer += chunk
        found = self.buffer
        self.buffer = b""
        return found

    def ask(self, command: str, needle: bytes, timeout: float = 30) -> bytes:
        """Repeat ``command`` until its output contains ``needle`` (hot-plug takes the guest a moment)."""
        deadline = time.monotonic() + timeout
        while True:
            marker = f"END{int(time.monotonic() * 1000)}"
            self.sock.sendall(f"{command}; echo {marker[:3]}''{marker[3:]}\n".encode())
            out = self.until(marker.encode(), timeout=30)
            if needle in out or time.monotonic() > deadline:
                return out
            time.sleep(1)

    def close(self):
        self.sock.close()


def _live_xml(server, vm, inactive=False) -> str:
    import libvirt  # only to name the flag of the persistent definition

    driver = driver_for(server)
    return driver._domain(str(vm.uuid)).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0)


@pytest.mark.integration
def test_hot_plug_on_the_tiny_guest(real_estate):
    e = real_estate
    user, repo = e["user"], e["repo"]
    with open(GUEST_DIR / "tiny.iso", "rb") as fh:
        storage.iso_upload(
            repository=repo, user=user, name="tiny.iso", fileobj=fh, size=(GUEST_DIR / "tiny.iso").stat().st_size
        )
    storage.disk_create(user=user, repository=repo, name="data", size_bytes=64 << 20)
    run_pending_jobs()
    iso, disk = repo.iso_files.get(), VirtualDisk.objects.get(name="data")
    vm = vms.vm_create(
        user=user,
        name="hot",
        server_pool=e["pool"],
        repository=repo,
        domain_type="PVHVM",
        os_type="OL6",
        guest_kernel="4.14.35-2047.el7uek",
        memory_mib=256,
        max_memory_mib=256,
        source={"kind": "iso", "iso": iso},
    )
    start = vms.vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    start.refresh_from_db()
    assert start.status == JobStatus.SUCCESS, start.error
    vm.refresh_from_db()
    serial = Serial(vm.serial_port)
    try:
        serial.until(b"ovmweb tiny guest")
        time.sleep(2)  # the shell prompt follows the banner

        # VNIC: hot-added live and into the persistent definition, seen by the guest kernel.
        vnic = vnics.vnic_create(vm=vm, user=user, network=None)
        run_pending_jobs()
        job = Job.objects.filter(operation="vm.hot_update").latest("pk")
        assert job.status == JobStatus.SUCCESS, job.error
        assert vnic.mac in _live_xml(e["server"], vm) and vnic.mac in _live_xml(e["server"], vm, inactive=True)
        assert vnic.mac.encode() in serial.ask("cat /sys/class/net/*/address", vnic.mac.encode())

        # Disk: a virtio disk appears in the guest as vdX.
        slot = vm_devices.vm_disk_attach(vm=vm, user=user, virtual_disk=disk)
        run_pending_jobs()
        job = Job.objects.filter(operation="vm.hot_update").latest("pk")
        assert job.status == JobStatus.SUCCESS, job.error
        assert job.result["applied"]
        target = next(iter(job.result["applied"].values()))
        assert target.startswith("vd")
        assert target.encode() in serial.ask("ls /sys/block", target.encode())

        # CD-ROM eject: the drive stays, empty, live.
        cdrom = vm.disk_slots.get(kind=DiskSlotKind.CDROM)
        vm_devices.vm_disk_detach(slot=cdrom, user=user)
        run_pending_jobs()
        job = Job.objects.filter(operation="vm.hot_update").latest("pk")
        assert job.status == JobStatus.SUCCESS, job.error
        assert "tiny.iso" not in _live_xml(e["server"], vm)
        assert VmDiskSlot.objects.get(pk=cdrom.pk).kind == DiskSlotKind.EMPTY

        # Disk and VNIC hot-removed (the guest acknowledges the PCI unplug).
        vm_devices.vm_disk_detach(slot=slot, user=user)
        # One device change at a time: the first job holds the VM's lock.
        with pytest.raises(Conflict, match="locked by job"):
            vnics.vnic_delete(vnic=vnic, user=user)
        run_pending_jobs()
        vnics.vnic_delete(vnic=vnic, user=user)
        run_pending_jobs()
        for job in Job.objects.filter(operation="vm.hot_update").order_by("-pk")[:2]:
            assert job.status == JobStatus.SUCCESS, job.error
        deadline = time.monotonic() + 20
        while vnic.mac in _live_xml(e["server"], vm) and time.monotonic() < deadline:
            time.sleep(0.5)
        live = _live_xml(e["server"], vm)
        assert vnic.mac not in live and disk.volume not in live
        assert vnic.mac not in _live_xml(e["server"], vm, inactive=True)
    finally:
        serial.close()
        vms.vm_action(vm=vm, action="kill", user=user)
        run_pending_jobs()
