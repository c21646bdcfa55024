"""The OVF descriptor of a virtual appliance, read as hostile input (seed 7.2, 4.7).

The XML is parsed by ``defusedxml`` with DTDs forbidden: no entity expansion ("billion
laughs"), no external entity pulling a host file into the text. Numbers and allocation
units are read by a bounded grammar (``byte * 2^40``; no exponent that would make Python
compute a number of a hundred thousand digits), and every size is capped at what a
real disk or memory can be.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import defusedxml
import defusedxml.ElementTree as DET
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

from ..choices import OsType

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
# CIM resource types used by OVF hardware items.
RESOURCE_CPU, RESOURCE_MEMORY, RESOURCE_DISK = "3", "4", "17"
MAX_DESCRIPTOR_BYTES = 8 * 1024 * 1024
MAX_BYTES = 2**60  # no disk or memory is larger: an OVF saying so is wrong or hostile
MAX_VCPUS = 4096
# DSP0004 programmatic units: "byte", "byte * 2^30", "byte * 1024", "byte * 10^9". Digits
# are bounded in the grammar itself, so that "byte * 2^99999" never reaches pow().
_UNIT = re.compile(r"byte(?:\*(\d{1,4})(?:\^(\d{1,3}))?)?")
_NAMED_UNITS = {"kilobytes": 2**10, "kb": 2**10, "megabytes": 2**20, "mb": 2**20, "gigabytes": 2**30, "gb": 2**30}
_NUMBER = re.compile(r"\d{1,19}")


class ApplianceError(Conflict):
    """An appliance that cannot be imported or deployed, with the reason."""


@dataclass
class OvfDisk:
    disk_id: str
    href: str
    capacity_bytes: int
    # What the OVF says the file is ("raw", "qcow2", "vmdk"), or "" when it says nothing we know.
    declared_format: str = ""


@dataclass
class OvfVm:
    name: str
    vcpus: int = 1
    memory_mib: int = 512
    os_type: str = OsType.OTHER_LINUX
    disks: list[OvfDisk] = field(default_factory=list)


@dataclass
class Ovf:
    files: dict[str, str]  # file id -> href
    vms: list[OvfVm]


def _attr(el: ET.Element, name: str, default: str = "") -> str:
    return el.get(f"{{{OVF_NS}}}{name}", el.get(name, default))


def _too_large(text: str) -> ApplianceError:
    return ApplianceError(_("The OVF gives a size or count out of any real range: %(v)r.") % {"v": text[:80]})


def _units(text: str | None, default: int) -> int:
    """``byte * 2^30`` and friends -> multiplier in bytes, at most ``MAX_BYTES``."""
    if not text:
        return default
    value = text.replace(" ", "").lower()
    if value in _NAMED_UNITS:
        return _NAMED_UNITS[value]
    match = _UNIT.fullmatch(value)
    if not match:
        raise ApplianceError(_("Unknown allocation unit %(u)r in the OVF.") % {"u": text[:80]})
    # At most 9999^999 (some 4000 digits, computed at once) thanks to the grammar's bounds.
    unit = int(match.group(1) or 1) ** int(match.group(2) or 1)
    if unit > MAX_BYTES:
        raise _too_large(text)
    return unit


def _number(text: str | None, limit: int) -> int:
    """A non-negative decimal number of the OVF, at most ``limit``."""
    value = (text or "").strip()
    if not _NUMBER.fullmatch(value):
        raise ApplianceError(_("The OVF gives %(v)r where a number is expected.") % {"v": value[:80]})
    if int(value) > limit:
        raise _too_large(value)
    return int(value)


def _scaled(quantity: str | None, unit: int) -> int:
    total = _number(quantity, MAX_BYTES) * unit
    if total > MAX_BYTES:
        raise _too_large(f"{quantity} * {unit}")
    return total


def declared_format(uri: str) -> str:
    """The format an OVF ``Disk/@format`` URI names (VMware's vmdk specification, the qcow
    page, "raw"), or "" when it names none we know."""
    text = uri.lower()
    for word, fmt in (("vmdk", "vmdk"), ("qcow", "qcow2"), ("raw", "raw")):
        if word in text:
            return fmt
    return ""


def os_type_from_ovf(description: str) -> str:
    """The OVF's operating system description mapped to the seed's guest OS types."""
    text = (description or "").lower()
    version = re.search(r"(\d+)", text)
    major = version.group(1) if version else ""
    if "oracle" in text and "linux" in text:
        return {"5": OsType.ORACLE_LINUX_5, "6": OsType.ORACLE_LINUX_6, "7": OsType.ORACLE_LINUX_7}.get(
            major, OsType.OTHER_LINUX
        )
    if "red hat" in text or "rhel" in text:
        return {"6": OsType.RHEL_6, "7": OsType.RHEL_7}.get(major, OsType.OTHER_LINUX)
    if "solaris" in text:
        return OsType.SOLARIS_SPARC if "sparc" in text else OsType.SOLARIS_X86
    if "windows" in text:
        return OsType.WINDOWS
    if "linux" in text:
        return OsType.OTHER_LINUX
    return OsType.OTHER


# --------------------------------------------------------------------------
# parse_ovf, step by step
# --------------------------------------------------------------------------


def _envelope(text: str | bytes) -> ET.Element:
    """The root element, parsed without DTDs, entities or external references."""
    if len(text) > MAX_DESCRIPTOR_BYTES:
        raise ApplianceError(_("The OVF descriptor is larger than %(n)d MiB.") % {"n": MAX_DESCRIPTOR_BYTES // 2**20})
    try:
        root = DET.fromstring(text, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DefusedXmlException as exc:
        raise ApplianceError(
            _("The OVF descriptor declares a DTD or entities, which are refused: %(e)s") % {"e": exc}
        ) from exc
    except ET.ParseError as exc:
        raise ApplianceError(_("The OVF descriptor is not valid XML: %(e)s") % {"e": exc}) from exc
    if root.tag != f"{{{OVF_NS}}}Envelope":
        raise ApplianceError(_("This is not an OVF 1.x/2.x descriptor (no ovf:Envelope)."))
    return root


def _disks(root: ET.Element, files: dict[str, str]) -> dict[str, OvfDisk]:
    """The DiskSection: disk id -> disk, each naming a file of the References."""
    disks = {}
    for disk in root.iter(f"{{{OVF_NS}}}Disk"):
        disk_id, file_ref = _attr(disk, "diskId"), _attr(disk, "fileRef")
        if file_ref and file_ref not in files:
            raise ApplianceError(
                _("Disk %(d)s refers to a file %(f)s the OVF does not list.") % {"d": disk_id, "f": file_ref}
            )
        unit = _units(_attr(disk, "capacityAllocationUnits"), 1)
        disks[disk_id] = OvfDisk(
            disk_id=disk_id,
            href=files.get(file_ref, ""),
            capacity_bytes=_scaled(_attr(disk, "capacity", "0") or "0", unit),
            declared_format=declared_format(_attr(disk, "format")),
        )
    return disks


def _apply_item(vm: OvfVm, item: ET.Element, disks: dict[str, OvfDisk]) -> None:
    """One hardware Item of a VirtualSystem: CPUs, memory or a disk."""
    kind = item.findtext(f"{{{RASD_NS}}}ResourceType")
    quantity = item.findtext(f"{{{RASD_NS}}}VirtualQuantity")
    if kind == RESOURCE_CPU and quantity:
        vm.vcpus = max(_number(quantity, MAX_VCPUS), 1)
    elif kind == RESOURCE_MEMORY and quantity:
        scale = _units(item.findtext(f"{{{RASD_NS}}}AllocationUnits"), 2**20)
        vm.memory_mib = max(_scaled(quantity, scale) // 2**20, 16)
    elif kind == RESOURCE_DISK:
        ref = (item.findtext(f"{{{RASD_NS}}}HostResource") or "").rsplit("/", 1)[-1]
        if ref not in disks:
            raise ApplianceError(
                _("%(vm)s uses disk %(d)s, which the OVF does not define.") % {"vm": vm.name, "d": ref}
            )
        vm.disks.append(disks[ref])


def _virtual_system(system: ET.Element, disks: dict[str, OvfDisk]) -> OvfVm:
    vm = OvfVm(name=(system.findtext(f"{{{OVF_NS}}}Name") or _attr(system, "id") or "vm").strip())
    os_section = system.find(f"{{{OVF_NS}}}OperatingSystemSection")
    if os_section is not None:
        vm.os_type = os_type_from_ovf(os_section.findtext(f"{{{OVF_NS}}}Description") or _attr(os_section, "osType"))
    for item in system.iter(f"{{{OVF_NS}}}Item"):
        _apply_item(vm, item, disks)
    return vm


def parse_ovf(text: str | bytes) -> Ovf:
    """Every VirtualSystem of the descriptor (also inside a VirtualSystemCollection)."""
    root = _envelope(text)
    files = {_attr(f, "id"): _attr(f, "href") for f in root.iter(f"{{{OVF_NS}}}File")}
    disks = _disks(root, files)
    vms = [_virtual_system(system, disks) for system in root.iter(f"{{{OVF_NS}}}VirtualSystem")]
    if not vms:
        raise ApplianceError(_("The OVF descriptor defines no virtual system."))
    return Ovf(files=files, vms=vms)
