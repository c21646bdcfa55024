"""The libvirt definition of a virtual machine from the inventory, and the helpers every
VM job operation shares: the VM a job names, its power state on a server, waiting for
one, the driver of the server it runs on."""

from __future__ import annotations

import time
from collections.abc import Collection

from django.utils.text import slugify
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DomainNotFound
from ovmweb.hypervisor.base import DiskSpec, DomainSpec, NicSpec, PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.registry import JobContext

from ..choices import DiskSlotKind, DomainType
from ..models import Server, VirtualMachine
from ..services import install_sources
from ..services.vm_devices import disk_path, iso_path

_POLL = 0.2


def load_vm(vm_id: int) -> VirtualMachine:
    return VirtualMachine.objects.select_related("server", "server_pool", "repository").get(pk=vm_id)


def domain_name(vm: VirtualMachine) -> str:
    # Unique per host and stable across renames of the VM (the uuid part).
    return f"{slugify(vm.name)[:40] or 'vm'}-{vm.uuid.hex[:8]}"


def slot_disk_spec(slot) -> DiskSpec:
    """A disk slot as the hypervisor sees it (paths follow the repository layout)."""
    if slot.kind == DiskSlotKind.DISK:
        d = slot.virtual_disk
        return DiskSpec(path=disk_path(d), device="disk", bus=slot.bus, format=d.format, shareable=d.shareable)
    if slot.kind == DiskSlotKind.CDROM:
        return DiskSpec(path=iso_path(slot.iso), device="cdrom", bus="sata", format="raw", readonly=True)
    return DiskSpec(path="", device="cdrom", bus="sata", format="raw", readonly=True)


def vnic_spec(n) -> NicSpec:
    return NicSpec(
        mac=n.mac,
        model=n.model,
        network=(n.network.libvirt_network if n.network else ""),
        bridge=(n.network.bridge if n.network and not n.network.libvirt_network else ""),
    )


def domain_spec(vm: VirtualMachine, server: Server) -> DomainSpec:
    """The libvirt definition of ``vm`` on ``server``, from the inventory.
    Paths follow the repository layout: VirtualDisks/<volume>, ISOs/<name>."""
    slots = vm.disk_slots.select_related("virtual_disk__repository", "iso__repository").order_by("slot")
    disks = [slot_disk_spec(slot) for slot in slots]
    nics = [vnic_spec(n) for n in vm.vnics.select_related("network").order_by("position", "id")]
    kernel = initrd = ""
    if vm.domain_type == DomainType.PVM:
        # Put there by install_sources.pvm_boot_files_fetch at start.
        kernel, initrd = install_sources.pvm_boot_paths(vm)
    virt_type = "kvm" if "kvm" in (server.domain_types or []) else "qemu"
    return DomainSpec(
        name=domain_name(vm),
        uuid=str(vm.uuid),
        domain_type=vm.domain_type,
        virt_type=virt_type,
        vcpus=vm.vcpus,
        max_vcpus=vm.max_vcpus,
        memory_mib=vm.memory_mib,
        max_memory_mib=vm.max_memory_mib,
        disks=disks,
        nics=nics,
        boot_order=list(vm.boot_order or ["disk"]),
        vnc_port=vm.vnc_port,
        serial_port=vm.serial_port,
        keymap=vm.keymap,
        mouse_device=vm.mouse_device,
        huge_pages=vm.huge_pages,
        cpu_pinning=vm.cpu_pinning,
        kernel=kernel,
        initrd=initrd,
        kernel_args=vm.kernel_args,
        description=vm.name,
    )


def power_state(driver, vm: VirtualMachine) -> PowerState:
    try:
        return driver.domain_info(str(vm.uuid)).state
    except DomainNotFound:
        return PowerState.ABSENT


def wait_for_state(
    ctx: JobContext, driver, vm: VirtualMachine, states: Collection[PowerState], timeout: float
) -> PowerState:
    deadline = time.monotonic() + timeout
    while True:
        state = power_state(driver, vm)
        if state in states or time.monotonic() > deadline:
            return state
        ctx.check_abort()
        time.sleep(_POLL)


def running_driver(vm: VirtualMachine):
    if vm.server is None:
        raise Conflict(_("%(vm)s runs on no known server.") % {"vm": vm.name})
    return driver_for(vm.server)
