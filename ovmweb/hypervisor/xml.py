"""libvirt XML documents built from the driver dataclasses.

Pure functions (no libvirt import) so that the documents can be unit-tested by
parsing them back. The mapping of the seed's domain types (DESIGN.md §4):

- HVM: BIOS boot with emulated devices only (IDE/SATA disks, e1000 NICs), since
  the guest is assumed to have no paravirtual drivers.
- PVHVM: BIOS boot with virtio disks and NICs.
- PVM: no BIOS; the kernel and initrd are loaded directly, virtio devices.

Every image carries its format explicitly, never left for libvirt or QEMU to probe from
the file's header (which the guest controls for a raw disk): a ``<disk>`` has
``<driver name='qemu' type=...>``, a volume ``<target><format>``, a thin clone's
``<backingStore><format>`` (so the overlay's header records its backing format too).
A missing or unknown format is a ``ValueError``, never a default.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from .base import DiskSpec, DomainSpec, NicSpec, PoolSpec

MESSAGES_CHANNEL = "org.ovmweb.messages.0"
# The image formats ovmweb records and hands to libvirt (an imported appliance's disk is VMDK).
DISK_FORMATS = ("raw", "qcow2", "vmdk")
_BOOT_DEV = {"disk": "hd", "cdrom": "cdrom", "network": "network"}
_DEV_PREFIX = {"virtio": "vd", "ide": "hd", "sata": "sd", "scsi": "sd"}
# IDE on the i440fx machine has two channels with two units each.
_IDE_MAX = 4


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, {k.rstrip("_"): str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def _dev_name(prefix: str, index: int) -> str:
    # vda..vdz, vdaa.. like libvirt's own naming.
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def disk_buses(spec: DomainSpec) -> list[str]:
    """The bus of each disk of ``spec`` after the domain type's rules.

    An HVM guest has no paravirtual drivers, so a virtio disk becomes IDE (SATA
    once the four IDE units are taken). A CD-ROM of a PV-aware guest stays on
    IDE/SATA because BIOS boot from a virtio CD-ROM is not possible.
    """
    buses = []
    ide_used = 0
    for disk in spec.disks:
        bus = disk.bus
        if spec.domain_type == "HVM" or (disk.device == "cdrom" and bus == "virtio"):
            bus = "ide" if bus in ("virtio", "ide") else bus
        if bus == "ide":
            if ide_used >= _IDE_MAX:
                bus = "sata"
            else:
                ide_used += 1
        buses.append(bus)
    return buses


def nic_model(spec: DomainSpec, nic: NicSpec) -> str:
    """HVM guests get an emulated NIC (e1000) even when virtio was asked for."""
    if spec.domain_type == "HVM" and nic.model == "virtio":
        return "e1000"
    return nic.model


def image_format(format: str, what: str) -> str:
    """``format`` if it is one ovmweb records; anything else (an empty one above all) is refused."""
    if format not in DISK_FORMATS:
        raise ValueError(f"{what} has no known image format ({format!r}); it is never probed")
    return format


def _disk_format(disk: DiskSpec) -> str:
    fmt = image_format(disk.format, f"disk {disk.path or '(empty drive)'}")
    if disk.device == "cdrom" and fmt != "raw":
        raise ValueError(f"CD-ROM {disk.path or '(empty drive)'} must hold a raw ISO image, not {fmt}")
    return fmt


def _disk(devices: ET.Element, disk: DiskSpec, bus: str, target: str) -> None:
    el = _sub(devices, "disk", type="file", device=disk.device)
    _sub(el, "driver", name="qemu", type=_disk_format(disk))
    if disk.path:
        _sub(el, "source", file=disk.path)
    _sub(el, "target", dev=target, bus=bus)
    if disk.readonly or disk.device == "cdrom":
        _sub(el, "readonly")
    if disk.shareable:
        _sub(el, "shareable")


def _nic(devices: ET.Element, spec: DomainSpec, nic: NicSpec) -> None:
    if nic.network:
        el = _sub(devices, "interface", type="network")
        _sub(el, "mac", address=nic.mac)
        _sub(el, "source", network=nic.network)
    elif nic.bridge:
        el = _sub(devices, "interface", type="bridge")
        _sub(el, "mac", address=nic.mac)
        _sub(el, "source", bridge=nic.bridge)
    else:
        el = _sub(devices, "interface", type="user")
        _sub(el, "mac", address=nic.mac)
    _sub(el, "model", type=nic_model(spec, nic))


def _inputs(devices: ET.Element, mouse_device: str) -> None:
    # The tablet reports absolute positions, so the VNC pointer stays aligned
    # in the browser console; it is the OS default we choose.
    if mouse_device == "ps2":
        _sub(devices, "input", type="mouse", bus="ps2")
    elif mouse_device == "usb-mouse":
        _sub(devices, "input", type="mouse", bus="usb")
    else:
        _sub(devices, "input", type="tablet", bus="usb")
    _sub(devices, "input", type="keyboard", bus="ps2")


def _check_domain_type(spec: DomainSpec) -> None:
    if spec.domain_type not in ("HVM", "PVHVM", "PVM"):
        raise ValueError(f"domain type {spec.domain_type} cannot run on an x86 libvirt server")
    if spec.domain_type == "PVM" and not spec.kernel:
        raise ValueError("a PVM guest needs a kernel (direct kernel boot)")


def _resources(root: ET.Element, spec: DomainSpec) -> None:
    _sub(root, "memory", spec.max_memory_mib * 1024, unit="KiB")
    _sub(root, "currentMemory", spec.memory_mib * 1024, unit="KiB")
    if spec.huge_pages:
        backing = _sub(root, "memoryBacking")
        _sub(backing, "hugepages")
    _sub(root, "vcpu", spec.max_vcpus, placement="static", current=spec.vcpus)
    if spec.cpu_pinning:
        tune = _sub(root, "cputune")
        for vcpu in range(spec.max_vcpus):
            _sub(tune, "vcpupin", vcpu=vcpu, cpuset=spec.cpu_pinning)


def _os(root: ET.Element, spec: DomainSpec) -> None:
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64", machine="pc")
    if spec.domain_type == "PVM":
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.kernel_args:
            _sub(os_el, "cmdline", spec.kernel_args)
    else:
        for dev in spec.boot_order or ["disk"]:
            if dev in _BOOT_DEV:
                _sub(os_el, "boot", dev=_BOOT_DEV[dev])
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")


def _disks(devices: ET.Element, spec: DomainSpec) -> None:
    counters: dict[str, int] = {}
    for disk, bus in zip(spec.disks, disk_buses(spec), strict=False):
        prefix = _DEV_PREFIX[bus]
        index = counters.get(prefix, 0)
        counters[prefix] = index + 1
        _disk(devices, disk, bus, _dev_name(prefix, index))


def _consoles(devices: ET.Element, spec: DomainSpec) -> None:
    """The serial console (TCP on loopback at the allocated port, else a pty) and the messages channel."""
    if spec.serial_port:
        serial = _sub(devices, "serial", type="tcp")
        _sub(serial, "source", mode="bind", host="127.0.0.1", service=spec.serial_port)
        _sub(serial, "protocol", type="raw")
        _sub(serial, "target", port=0)
        console = _sub(devices, "console", type="tcp")
        _sub(console, "source", mode="bind", host="127.0.0.1", service=spec.serial_port)
        _sub(console, "protocol", type="raw")
        _sub(console, "target", type="serial", port=0)
    else:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port=0)
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port=0)
    if spec.messages_channel:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "source", mode="bind")
        _sub(channel, "target", type="virtio", name=MESSAGES_CHANNEL)


def _display(devices: ET.Element, spec: DomainSpec) -> None:
    # force-shared: QEMU ignores a client's ClientInit asking for exclusive access,
    # which would disconnect every other console of the VM (another user's, a viewer's).
    vnc = {"type": "vnc", "listen": "127.0.0.1", "keymap": spec.keymap, "sharePolicy": "force-shared"}
    if spec.vnc_port:
        _sub(devices, "graphics", port=spec.vnc_port, autoport="no", **vnc)
    else:
        _sub(devices, "graphics", autoport="yes", **vnc)
    video = _sub(devices, "video")
    _sub(video, "model", type="vga")


def domain_xml(spec: DomainSpec) -> str:
    """The persistent domain definition for ``spec``."""
    _check_domain_type(spec)
    root = ET.Element("domain", type=spec.virt_type)
    _sub(root, "name", spec.name)
    _sub(root, "uuid", spec.uuid)
    if spec.description:
        _sub(root, "description", spec.description)
    _resources(root, spec)
    _os(root, spec)
    devices = _sub(root, "devices")
    _disks(devices, spec)
    for nic in spec.nics:
        _nic(devices, spec, nic)
    _consoles(devices, spec)
    _inputs(devices, spec.mouse_device)
    _display(devices, spec)
    if spec.domain_type != "HVM":
        _sub(devices, "memballoon", model="virtio")
    return ET.tostring(root, encoding="unicode")


def pool_xml(spec: PoolSpec) -> str:
    """A storage pool: ``dir`` for a directory, ``netfs`` for an NFS export mounted at ``path``."""
    if spec.backend not in ("dir", "netfs"):
        raise ValueError(f"unknown repository backend {spec.backend}")
    root = ET.Element("pool", type=spec.backend)
    _sub(root, "name", spec.name)
    if spec.backend == "netfs":
        if not spec.nfs_server or not spec.nfs_export:
            raise ValueError("an NFS repository needs a server and an export path")
        source = _sub(root, "source")
        _sub(source, "host", name=spec.nfs_server)
        _sub(source, "dir", path=spec.nfs_export)
        _sub(source, "format", type="nfs")
    target = _sub(root, "target")
    _sub(target, "path", spec.path)
    return ET.tostring(root, encoding="unicode")


def volume_xml(
    *,
    name: str,
    capacity_bytes: int,
    format: str,
    allocation_bytes: int = 0,
    backing_path: str = "",
    backing_format: str = "",
) -> str:
    """A volume; ``allocation_bytes == capacity_bytes`` asks libvirt to allocate every block.
    With ``backing_path`` (a thin clone), ``backing_format`` is the backing file's recorded format."""
    root = ET.Element("volume")
    _sub(root, "name", name)
    _sub(root, "capacity", capacity_bytes, unit="bytes")
    _sub(root, "allocation", allocation_bytes, unit="bytes")
    target = _sub(root, "target")
    _sub(target, "format", type=image_format(format, f"volume {name}"))
    if backing_path:
        backing = _sub(root, "backingStore")
        _sub(backing, "path", backing_path)
        _sub(backing, "format", type=image_format(backing_format, f"backing file {backing_path}"))
    return ET.tostring(root, encoding="unicode")


# ---------------------------------------------------------------- hot-plug


def next_disk_target(bus: str, used: set[str]) -> str:
    """The first free target name of ``bus`` (vdb when vda is taken) for a hot-plugged disk."""
    prefix = _DEV_PREFIX[bus]
    index = 0
    while _dev_name(prefix, index) in used:
        index += 1
    return _dev_name(prefix, index)


def disk_device_xml(disk: DiskSpec, *, bus: str, target: str) -> str:
    """One ``<disk>`` element, as attachDeviceFlags takes it."""
    devices = ET.Element("devices")
    _disk(devices, disk, bus, target)
    return ET.tostring(devices[0], encoding="unicode")


def nic_device_xml(nic: NicSpec, *, domain_type: str) -> str:
    """One ``<interface>`` element; the model follows the domain type as in a full definition."""
    devices = ET.Element("devices")
    _nic(
        devices,
        DomainSpec(
            name="",
            uuid="",
            domain_type=domain_type,
            virt_type="",
            vcpus=1,
            max_vcpus=1,
            memory_mib=1,
            max_memory_mib=1,
        ),
        nic,
    )
    return ET.tostring(devices[0], encoding="unicode")


def rewrite_disk_sources(document: str, mapping: dict[str, str]) -> str:
    """The domain XML with each disk source file in ``mapping`` replaced (the destination
    definition of a migration that copies disks into another repository)."""
    root = ET.fromstring(document)  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
    for source in root.findall("./devices/disk/source"):
        path = source.get("file")
        if path in mapping:
            source.set("file", mapping[path])
    return ET.tostring(root, encoding="unicode")
