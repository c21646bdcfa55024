"""Hot-plug: disks, CD-ROMs and NICs added to or removed from a domain, live and persistently."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt

from ovmweb.errors import OperationFailed

from .. import xml as xmlbuild
from ..base import DiskSpec, NicSpec
from .connection import Connection, errors
from .domains import affects


def _xml_for(dom, flags: int) -> ET.Element:
    # The persistent definition can differ from the live one (devices pending a restart).
    inactive = libvirt.VIR_DOMAIN_XML_INACTIVE if flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG else 0
    return ET.fromstring(dom.XMLDesc(inactive))  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)


def _find_device(root: ET.Element, device: DiskSpec | NicSpec) -> ET.Element | None:
    if isinstance(device, NicSpec):
        for el in root.findall("./devices/interface"):
            mac = el.find("mac")
            if mac is not None and mac.get("address", "").lower() == device.mac.lower():
                return el
        return None
    for el in root.findall("./devices/disk"):
        source = el.find("source")
        if source is not None and source.get("file") == device.path:
            return el
    return None


def _cdrom_holding(root: ET.Element, path: str) -> ET.Element | None:
    """The CD-ROM drive whose medium is ``path`` (``""``: the first empty drive)."""
    for el in root.findall("./devices/disk[@device='cdrom']"):
        source = el.find("source")
        if (source.get("file", "") if source is not None else "") == path:
            return el
    return None


def _set_medium(drive: ET.Element, new_path: str) -> None:
    """Put ``new_path`` (an ISO image: raw, said explicitly) in the drive, or empty it (``""``)."""
    source = drive.find("source")
    if source is not None:
        drive.remove(source)
    if new_path:
        driver = drive.find("driver")
        if driver is None:
            driver = ET.Element("driver", name="qemu")
            drive.insert(0, driver)
        driver.set("type", "raw")
        drive.insert(list(drive).index(driver) + 1, ET.Element("source", file=new_path))


class DevicesMixin(Connection):
    def attach_device(self, uuid: str, device: DiskSpec | NicSpec, *, domain_type: str) -> str:
        dom = self._domain(uuid)
        try:
            return self._attach(dom, uuid, device, domain_type=domain_type)
        except ValueError as exc:  # a disk without a known format
            raise OperationFailed(str(exc)) from exc

    @staticmethod
    def _attach(dom, uuid: str, device: DiskSpec | NicSpec, *, domain_type: str) -> str:
        with errors(f"hot-plugging a device into {uuid}"):
            if isinstance(device, NicSpec):
                document, ident = xmlbuild.nic_device_xml(device, domain_type=domain_type), device.mac
            else:
                used = {t.get("dev") for t in _xml_for(dom, 0).findall("./devices/disk/target")}
                used |= {
                    t.get("dev")
                    for t in _xml_for(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG).findall("./devices/disk/target")
                }
                ident = xmlbuild.next_disk_target(device.bus, used)
                document = xmlbuild.disk_device_xml(device, bus=device.bus, target=ident)
            for flags in affects(dom):
                dom.attachDeviceFlags(document, flags)
        return ident

    def detach_device(self, uuid: str, device: DiskSpec | NicSpec) -> None:
        dom = self._domain(uuid)
        with errors(f"hot-unplugging a device from {uuid}"):
            found = False
            for flags in affects(dom):
                el = _find_device(_xml_for(dom, flags), device)
                if el is None:
                    continue  # already gone there
                found = True
                dom.detachDeviceFlags(ET.tostring(el, encoding="unicode"), flags)
            if not found:
                raise OperationFailed(f"domain {uuid} has no such device")

    def change_media(self, uuid: str, *, current_path: str, new_path: str) -> None:
        dom = self._domain(uuid)
        with errors(f"changing the CD-ROM of {uuid}"):
            for flags in affects(dom):
                drive = _cdrom_holding(_xml_for(dom, flags), current_path)
                if drive is None:
                    raise OperationFailed(f"domain {uuid} has no CD-ROM drive holding {current_path or 'nothing'}")
                _set_medium(drive, new_path)
                dom.updateDeviceFlags(
                    ET.tostring(drive, encoding="unicode"), flags | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
                )
