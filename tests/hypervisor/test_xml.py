"""Domain/pool/volume XML per domain type, parsed back."""

import xml.etree.ElementTree as ET

import pytest

from ovmweb.hypervisor.base import DiskSpec, DomainSpec, NicSpec, PoolSpec
from ovmweb.hypervisor.xml import (
    MESSAGES_CHANNEL,
    disk_device_xml,
    domain_xml,
    pool_xml,
    rewrite_disk_sources,
    volume_xml,
)


def spec(**overrides) -> DomainSpec:
    values = dict(
        name="vm1",
        uuid="6c5a2f3e-1d0b-4a8e-9f43-6a1d2b3c4d5e",
        domain_type="HVM",
        virt_type="qemu",
        vcpus=1,
        max_vcpus=4,
        memory_mib=256,
        max_memory_mib=1024,
        disks=[DiskSpec(path="/r/VirtualDisks/a.qcow2"), DiskSpec(path="/r/ISOs/x.iso", device="cdrom", format="raw")],
        nics=[NicSpec(mac="00:21:f6:00:00:01", network="default")],
        boot_order=["cdrom", "disk"],
        vnc_port=10003,
        serial_port=7903,
        keymap="de",
    )
    values.update(overrides)
    return DomainSpec(**values)


def parse(s: DomainSpec) -> ET.Element:
    return ET.fromstring(domain_xml(s))


def test_hvm_uses_bios_boot_and_emulated_devices():
    root = parse(spec())
    assert root.get("type") == "qemu"
    assert [b.get("dev") for b in root.findall("./os/boot")] == ["cdrom", "hd"]
    assert root.find("./os/kernel") is None
    targets = [
        (d.get("device"), d.find("target").get("bus"), d.find("target").get("dev"))
        for d in root.findall("./devices/disk")
    ]
    assert targets == [("disk", "ide", "hda"), ("cdrom", "ide", "hdb")]
    assert root.find("./devices/interface/model").get("type") == "e1000"
    assert root.find("./devices/interface/mac").get("address") == "00:21:f6:00:00:01"
    assert root.find("./devices/interface/source").get("network") == "default"
    assert root.find("./devices/disk[@device='cdrom']/readonly") is not None


def test_hvm_puts_fifth_disk_on_sata():
    disks = [DiskSpec(path=f"/r/{i}.qcow2") for i in range(5)]
    root = parse(spec(disks=disks))
    buses = [d.find("target").get("bus") for d in root.findall("./devices/disk")]
    assert buses == ["ide"] * 4 + ["sata"]
    assert root.findall("./devices/disk/target")[4].get("dev") == "sda"


def test_pvhvm_uses_virtio_disks_and_nics_but_ide_cdrom():
    root = parse(spec(domain_type="PVHVM"))
    targets = [(d.find("target").get("bus"), d.find("target").get("dev")) for d in root.findall("./devices/disk")]
    assert targets == [("virtio", "vda"), ("ide", "hda")]
    assert root.find("./devices/interface/model").get("type") == "virtio"
    assert root.find("./devices/memballoon").get("model") == "virtio"


def test_pvm_boots_the_kernel_directly():
    root = parse(
        spec(
            domain_type="PVM",
            kernel="/r/k/vmlinuz",
            initrd="/r/k/initrd.gz",
            kernel_args="console=ttyS0",
            disks=[DiskSpec(path="/r/a.qcow2")],
        )
    )
    assert root.findtext("./os/kernel") == "/r/k/vmlinuz"
    assert root.findtext("./os/initrd") == "/r/k/initrd.gz"
    assert root.findtext("./os/cmdline") == "console=ttyS0"
    assert root.find("./os/boot") is None
    assert root.find("./devices/disk/target").get("bus") == "virtio"


def test_pvm_without_kernel_is_refused():
    with pytest.raises(ValueError, match="kernel"):
        domain_xml(spec(domain_type="PVM"))


def test_sparc_is_refused():
    with pytest.raises(ValueError, match="SPARC"):
        domain_xml(spec(domain_type="SPARC"))


def test_consoles_bound_to_loopback_on_allocated_ports():
    root = parse(spec())
    vnc = root.find("./devices/graphics")
    assert (vnc.get("type"), vnc.get("port"), vnc.get("autoport"), vnc.get("listen"), vnc.get("keymap")) == (
        "vnc",
        "10003",
        "no",
        "127.0.0.1",
        "de",
    )
    # No client may take the screen for itself and disconnect the others' consoles.
    assert vnc.get("sharePolicy") == "force-shared"
    serial = root.find("./devices/serial")
    assert serial.get("type") == "tcp"
    source = serial.find("source")
    assert (source.get("mode"), source.get("host"), source.get("service")) == ("bind", "127.0.0.1", "7903")
    assert serial.find("protocol").get("type") == "raw"
    assert root.find("./devices/console/target").get("type") == "serial"
    channel = root.find("./devices/channel")
    assert channel.get("type") == "unix"
    assert channel.find("target").get("name") == MESSAGES_CHANNEL


def test_memory_vcpus_hugepages_pinning_and_mouse():
    root = parse(spec(huge_pages=True, cpu_pinning="0-1", vcpus=2, max_vcpus=3, mouse_device="ps2"))
    assert root.findtext("./memory") == str(1024 * 1024)
    assert root.findtext("./currentMemory") == str(256 * 1024)
    vcpu = root.find("./vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("3", "2")
    assert root.find("./memoryBacking/hugepages") is not None
    pins = root.findall("./cputune/vcpupin")
    assert [(p.get("vcpu"), p.get("cpuset")) for p in pins] == [("0", "0-1"), ("1", "0-1"), ("2", "0-1")]
    assert root.find("./devices/input[@type='mouse']").get("bus") == "ps2"


def test_no_pinning_no_hugepages_by_default_and_tablet():
    root = parse(spec())
    assert root.find("./cputune") is None
    assert root.find("./memoryBacking") is None
    assert root.find("./devices/input[@type='tablet']").get("bus") == "usb"


def test_pool_xml_dir_and_netfs():
    d = ET.fromstring(pool_xml(PoolSpec(name="p", path="/srv/repo")))
    assert d.get("type") == "dir" and d.findtext("./target/path") == "/srv/repo"
    n = ET.fromstring(
        pool_xml(
            PoolSpec(name="n", path="/OVS/Repositories/x", backend="netfs", nfs_server="nfs1", nfs_export="/exports/x")
        )
    )
    assert n.get("type") == "netfs"
    assert n.find("./source/host").get("name") == "nfs1"
    assert n.find("./source/dir").get("path") == "/exports/x"
    assert n.find("./source/format").get("type") == "nfs"
    assert n.findtext("./target/path") == "/OVS/Repositories/x"
    with pytest.raises(ValueError):
        pool_xml(PoolSpec(name="n", path="/x", backend="netfs"))


def test_volume_xml_thin_and_full():
    thin = ET.fromstring(
        volume_xml(
            name="c.qcow2", capacity_bytes=1 << 30, format="qcow2", backing_path="/r/a.qcow2", backing_format="qcow2"
        )
    )
    assert thin.findtext("./backingStore/path") == "/r/a.qcow2"
    assert thin.findtext("./allocation") == "0"
    full = ET.fromstring(volume_xml(name="f.raw", capacity_bytes=1 << 20, format="raw", allocation_bytes=1 << 20))
    assert full.findtext("./allocation") == str(1 << 20)
    assert full.find("./backingStore") is None


# ---------------------------------------------------------------- formats: said, never probed


def driver_types(root: ET.Element) -> list[tuple[str, str | None]]:
    return [
        (d.get("device"), d.find("driver").get("type") if d.find("driver") is not None else None)
        for d in root.findall("./devices/disk")
    ]


@pytest.mark.parametrize("domain_type", ["HVM", "PVHVM"])
def test_every_disk_of_a_domain_names_its_recorded_format(domain_type):
    disks = [
        DiskSpec(path="/r/VirtualDisks/a.qcow2", format="qcow2"),
        DiskSpec(path="/r/VirtualDisks/b.img", format="raw"),
        DiskSpec(path="/r/VirtualDisks/c.vmdk", format="vmdk"),
        DiskSpec(path="/r/ISOs/x.iso", device="cdrom", format="raw"),
        DiskSpec(path="", device="cdrom", format="raw"),
    ]
    root = parse(spec(domain_type=domain_type, disks=disks))
    assert driver_types(root) == [
        ("disk", "qcow2"),
        ("disk", "raw"),
        ("disk", "vmdk"),
        ("cdrom", "raw"),
        ("cdrom", "raw"),
    ]
    assert {d.find("driver").get("name") for d in root.findall("./devices/disk")} == {"qemu"}


def test_a_raw_disk_is_not_left_to_the_default():
    # The DiskSpec default (qcow2) must not win over what was recorded.
    root = parse(spec(disks=[DiskSpec(path="/r/VirtualDisks/b.img", format="raw")]))
    assert driver_types(root) == [("disk", "raw")]


@pytest.mark.parametrize("fmt", ["", "auto", "iso", "vhd"])
def test_a_disk_without_a_known_format_is_refused(fmt):
    with pytest.raises(ValueError, match="never probed"):
        domain_xml(spec(disks=[DiskSpec(path="/r/VirtualDisks/a", format=fmt)]))
    with pytest.raises(ValueError, match="never probed"):
        disk_device_xml(DiskSpec(path="/r/VirtualDisks/a", format=fmt), bus="virtio", target="vdb")


def test_a_cdrom_holds_a_raw_image_only():
    with pytest.raises(ValueError, match="raw ISO"):
        domain_xml(spec(disks=[DiskSpec(path="/r/ISOs/x.iso", device="cdrom", format="qcow2")]))
    with pytest.raises(ValueError, match="raw ISO"):
        domain_xml(spec(disks=[DiskSpec(path="/r/ISOs/x.iso", device="cdrom")]))  # the qcow2 default


@pytest.mark.parametrize(
    ("disk", "expected"),
    [
        (DiskSpec(path="/r/VirtualDisks/a.qcow2", format="qcow2"), "qcow2"),
        (DiskSpec(path="/r/VirtualDisks/b.img", format="raw"), "raw"),
        (DiskSpec(path="/r/ISOs/x.iso", device="cdrom", bus="sata", format="raw"), "raw"),
    ],
)
def test_a_hot_plugged_disk_names_its_format(disk, expected):
    el = ET.fromstring(disk_device_xml(disk, bus=disk.bus, target="vdb"))
    assert (el.find("driver").get("name"), el.find("driver").get("type")) == ("qemu", expected)


@pytest.mark.parametrize("fmt", ["raw", "qcow2", "vmdk"])
def test_a_volume_names_its_format(fmt):
    root = ET.fromstring(volume_xml(name="v", capacity_bytes=1 << 20, format=fmt))
    assert root.find("./target/format").get("type") == fmt


@pytest.mark.parametrize("backing_format", ["raw", "qcow2"])
def test_a_thin_clone_names_its_format_and_its_backing_format(backing_format):
    root = ET.fromstring(
        volume_xml(
            name="c.qcow2",
            capacity_bytes=1 << 20,
            format="qcow2",
            backing_path="/r/VirtualDisks/base",
            backing_format=backing_format,
        )
    )
    assert root.find("./target/format").get("type") == "qcow2"
    assert root.find("./backingStore/format").get("type") == backing_format


@pytest.mark.parametrize("fmt", ["", "auto"])
def test_a_volume_or_backing_file_without_a_known_format_is_refused(fmt):
    with pytest.raises(ValueError, match="never probed"):
        volume_xml(name="v", capacity_bytes=1 << 20, format=fmt)
    with pytest.raises(ValueError, match="backing file"):
        volume_xml(name="c", capacity_bytes=1 << 20, format="qcow2", backing_path="/r/base", backing_format=fmt)


def test_migration_keeps_each_disks_format():
    document = domain_xml(
        spec(
            disks=[
                DiskSpec(path="/r/VirtualDisks/b.img", format="raw"),
                DiskSpec(path="/r/ISOs/x.iso", device="cdrom", format="raw"),
            ]
        )
    )
    moved = ET.fromstring(rewrite_disk_sources(document, {"/r/VirtualDisks/b.img": "/s/VirtualDisks/b.img"}))
    assert moved.find("./devices/disk/source").get("file") == "/s/VirtualDisks/b.img"
    assert driver_types(moved) == [("disk", "raw"), ("cdrom", "raw")]
