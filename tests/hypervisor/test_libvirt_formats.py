"""The driver hands libvirt the recorded image formats and never relies on libvirt's probe of a
file's header (libvirt's in-process ``test:///default`` driver; its volumes are bookkeeping only)."""

import uuid
import xml.etree.ElementTree as ET

import pytest

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.base import DiskSpec, DomainSpec, PoolSpec
from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.hypervisor.libvirt.devices import _cdrom_holding, _set_medium


@pytest.fixture
def driver():
    d = LibvirtDriver("test:///default")
    yield d
    d.close()


@pytest.fixture
def pool(driver):
    name = f"f-{uuid.uuid4().hex[:8]}"
    driver.pool_define(PoolSpec(name=name, path=f"/nowhere/{name}"))
    yield name
    driver.pool_undefine(name)


def volume_xml(driver, pool, name) -> ET.Element:
    return ET.fromstring(driver._volume(pool, name).XMLDesc(0))


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_a_created_volume_carries_its_format(driver, pool, fmt):
    driver.volume_create(pool, f"v.{fmt}", 1 << 20, format=fmt)
    assert volume_xml(driver, pool, f"v.{fmt}").find("./target/format").get("type") == fmt


def test_a_volume_without_a_format_is_not_created(driver, pool):
    with pytest.raises(OperationFailed, match="never probed"):
        driver.volume_create(pool, "v", 1 << 20, format="")
    assert driver.pool_refresh(pool).volumes == []


def test_a_thin_clone_backs_onto_the_recorded_format_not_libvirts_reading(driver, pool):
    # libvirt reads the base as qcow2 (as it would a raw disk whose guest wrote a qcow2
    # header); ovmweb recorded raw: the overlay's backing format is raw.
    driver.volume_create(pool, "base", 1 << 20, format="qcow2")
    info = driver.volume_clone(pool, "base", pool, "thin.qcow2", clone_type="thin", source_format="raw")
    assert info.format == "qcow2"
    overlay = volume_xml(driver, pool, "thin.qcow2")
    assert overlay.find("./target/format").get("type") == "qcow2"
    assert overlay.findtext("./backingStore/path").endswith("/base")
    assert overlay.find("./backingStore/format").get("type") == "raw"


@pytest.mark.parametrize("clone_type", ["sparse", "non_sparse"])
def test_a_copy_whose_header_disagrees_with_the_record_is_refused(driver, pool, clone_type):
    driver.volume_create(pool, "base", 1 << 20, format="qcow2")
    with pytest.raises(OperationFailed, match="recorded as raw but its header reads as qcow2"):
        driver.volume_clone(pool, "base", pool, "copy.qcow2", clone_type=clone_type, source_format="raw")
    assert [v.name for v in driver.pool_refresh(pool).volumes] == ["base"]


@pytest.mark.parametrize(("source_format", "target_format"), [("qcow2", "qcow2"), ("raw", "qcow2"), ("raw", "raw")])
def test_a_copy_whose_header_agrees_is_made_in_the_target_format(driver, pool, source_format, target_format):
    driver.volume_create(pool, "base", 1 << 20, format=source_format)
    info = driver.volume_clone(
        pool, "base", pool, "copy", clone_type="sparse", source_format=source_format, format=target_format
    )
    assert info.format == target_format
    assert volume_xml(driver, pool, "copy").find("./backingStore") is None


def test_a_clone_needs_the_source_format(driver, pool):
    driver.volume_create(pool, "base", 1 << 20, format="qcow2")
    with pytest.raises(TypeError):
        driver.volume_clone(pool, "base", pool, "c", clone_type="thin")
    with pytest.raises(OperationFailed, match="never probed"):
        driver.volume_clone(pool, "base", pool, "c", clone_type="thin", source_format="")


def test_a_domain_defined_through_the_driver_keeps_each_format(driver):
    u = str(uuid.uuid4())
    driver.define(
        DomainSpec(
            name=f"f-{u[:8]}",
            uuid=u,
            domain_type="PVHVM",
            virt_type="qemu",
            vcpus=1,
            max_vcpus=1,
            memory_mib=64,
            max_memory_mib=64,
            disks=[
                DiskSpec(path="/r/VirtualDisks/a.qcow2", format="qcow2"),
                DiskSpec(path="/r/VirtualDisks/b.img", format="raw"),
                DiskSpec(path="/r/ISOs/x.iso", device="cdrom", bus="sata", format="raw"),
            ],
        )
    )
    try:
        root = ET.fromstring(driver.domain_xml(u))
        assert [(d.get("device"), d.find("driver").get("type")) for d in root.findall("./devices/disk")] == [
            ("disk", "qcow2"),
            ("disk", "raw"),
            ("cdrom", "raw"),
        ]
    finally:
        driver.undefine(u)


def test_hot_plugging_a_disk_without_a_format_is_a_driver_error(driver):
    u = str(uuid.uuid4())
    driver.define(
        DomainSpec(
            name=f"f-{u[:8]}",
            uuid=u,
            domain_type="PVHVM",
            virt_type="qemu",
            vcpus=1,
            max_vcpus=1,
            memory_mib=64,
            max_memory_mib=64,
        )
    )
    try:
        with pytest.raises(OperationFailed, match="never probed"):
            driver.attach_device(u, DiskSpec(path="/r/VirtualDisks/b", format=""), domain_type="PVHVM")
    finally:
        driver.undefine(u)


@pytest.mark.parametrize(
    "drive",
    [
        "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='sda' bus='sata'/></disk>",
        # a drive whose definition came without a driver element, or with another type
        "<disk type='file' device='cdrom'><target dev='sda' bus='sata'/><readonly/></disk>",
        "<disk type='file' device='cdrom'><driver name='qemu' type='qcow2'/><target dev='sda' bus='sata'/></disk>",
    ],
)
def test_an_inserted_iso_is_raw_explicitly(drive):
    root = ET.fromstring(f"<domain><devices>{drive}</devices></domain>")
    el = _cdrom_holding(root, "")
    _set_medium(el, "/r/ISOs/x.iso")
    assert el.find("driver").get("type") == "raw"
    assert el.find("source").get("file") == "/r/ISOs/x.iso"
    assert [c.tag for c in el][:2] == ["driver", "source"]
    assert _cdrom_holding(root, "/r/ISOs/x.iso") is el
    _set_medium(el, "")  # eject
    assert el.find("source") is None and _cdrom_holding(root, "") is el
