"""The OVF 1.0 descriptor of an exported virtual machine (``exports.py`` describes the
OVA it goes into): CPUs, memory, one controller per bus and disk, one ethernet item per
VNIC, in the element order strict readers check."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

from django.utils import translation

from ..choices import OsType
from ..models import VirtualMachine

OVF_DISK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"


# vmx-10 is the first VMware hardware family with an AHCI (SATA) controller; other
# importers (VirtualBox, oVirt) do not check the family.
VIRTUAL_SYSTEM_TYPE = "vmx-10"


# CIM_OperatingSystem OsType values (DMTF) for the OVF OperatingSystemSection.
CIM_OS_TYPES = {
    OsType.ORACLE_LINUX_5: 109,
    OsType.ORACLE_LINUX_6: 109,
    OsType.ORACLE_LINUX_7: 109,
    OsType.RHEL_6: 80,
    OsType.RHEL_7: 80,
    OsType.SOLARIS_X86: 29,
    OsType.SOLARIS_SPARC: 29,
    OsType.WINDOWS: 1,
    OsType.OTHER_LINUX: 101,
    OsType.OTHER: 1,
}


# Disk bus -> (CIM resource type, resource subtype, disks per controller, VMDK adapter type).
# virtio-blk has no OVF controller: such disks are put on an LSI Logic SCSI controller.
CONTROLLERS = {
    "ide": (5, "PIIX4", 2, "ide"),
    "sata": (20, "AHCI", 30, "lsilogic"),
    "virtio": (6, "lsilogic", 15, "lsilogic"),
}


NIC_SUBTYPES = {"e1000": "E1000", "rtl8139": "PCNet32", "virtio": "VirtIO"}


def _item(**fields: Any) -> str:
    # CIM puts the rasd elements of an Item in alphabetical order; strict readers check it.
    body = "".join(f"<rasd:{k}>{escape(str(v))}</rasd:{k}>" for k, v in sorted(fields.items()))
    return f"      <Item>{body}</Item>\n"


def build_ovf(*, vm: VirtualMachine, disks: list[dict[str, Any]]) -> str:
    """An OVF 1.0 descriptor of ``vm``. ``disks`` items: ``file``, ``bus``, ``capacity_bytes``,
    ``size_bytes`` (of the converted file)."""
    with translation.override("en"):
        os_label = str(OsType(vm.os_type).label) if vm.os_type in OsType.values else str(vm.os_type)
    refs, disk_section, items = "", "", []
    instance = 1
    items.append(
        _item(
            AllocationUnits="hertz * 10^6",
            Description="Number of virtual CPUs",
            ElementName=f"{vm.vcpus} virtual CPU(s)",
            InstanceID=instance,
            ResourceType=3,
            VirtualQuantity=vm.vcpus,
        )
    )
    instance += 1
    items.append(
        _item(
            AllocationUnits="byte * 2^20",
            Description="Memory size",
            ElementName=f"{vm.memory_mib} MB of memory",
            InstanceID=instance,
            ResourceType=4,
            VirtualQuantity=vm.memory_mib,
        )
    )
    controllers: dict[tuple[str, int], int] = {}
    per_bus: dict[str, int] = {}
    for n, disk in enumerate(disks):
        file_id, disk_id = f"file{n + 1}", f"vmdisk{n + 1}"
        refs += f'    <File ovf:href={quoteattr(disk["file"])} ovf:id="{file_id}" ovf:size="{disk["size_bytes"]}"/>\n'
        disk_section += (
            f'    <Disk ovf:capacity="{disk["capacity_bytes"]}" ovf:capacityAllocationUnits="byte" '
            f'ovf:diskId="{disk_id}" ovf:fileRef="{file_id}" ovf:format="{OVF_DISK_FORMAT}"/>\n'
        )
        bus = disk["bus"] if disk["bus"] in CONTROLLERS else "sata"
        kind, subtype, per_controller, _adapter = CONTROLLERS[bus]
        index = per_bus.get(bus, 0)
        per_bus[bus] = index + 1
        key = (bus, index // per_controller)
        if key not in controllers:
            instance += 1
            controllers[key] = instance
            items.append(
                _item(
                    Address=key[1],
                    Description=f"{bus.upper()} controller",
                    ElementName=f"{bus}{key[1]}",
                    InstanceID=instance,
                    ResourceSubType=subtype,
                    ResourceType=kind,
                )
            )
        instance += 1
        items.append(
            _item(
                AddressOnParent=index % per_controller,
                ElementName=f"disk{n + 1}",
                HostResource=f"ovf:/disk/{disk_id}",
                InstanceID=instance,
                Parent=controllers[key],
                ResourceType=17,
            )
        )
    networks: dict[str, str] = {}
    for n, vnic in enumerate(vm.vnics.select_related("network").order_by("position", "pk")):
        network = vnic.network.name if vnic.network_id else "unconnected"
        networks.setdefault(network, "")
        instance += 1
        items.append(
            _item(
                Address=vnic.mac,
                AutomaticAllocation="true",
                Connection=network,
                ElementName=f"ethernet{n}",
                InstanceID=instance,
                ResourceSubType=NIC_SUBTYPES.get(vnic.model, "E1000"),
                ResourceType=10,
            )
        )
    network_section = ""
    if networks:
        network_section = (
            "  <NetworkSection>\n    <Info>The logical networks used by the virtual machine</Info>\n"
            + "".join(
                f"    <Network ovf:name={quoteattr(name)}><Description>{escape(name)}</Description></Network>\n"
                for name in networks
            )
            + "  </NetworkSection>\n"
        )
    annotation = ""
    if vm.description:
        annotation = (
            f"    <AnnotationSection>\n      <Info>Description</Info>\n"
            f"      <Annotation>{escape(vm.description)}</Annotation>\n    </AnnotationSection>\n"
        )
    name = escape(vm.name)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Envelope ovf:version="1.0" xml:lang="en-US" xmlns="http://schemas.dmtf.org/ovf/envelope/1"'
        ' xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"'
        ' xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"'
        ' xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">\n'
        f"  <References>\n{refs}  </References>\n"
        f"  <DiskSection>\n    <Info>Virtual disks</Info>\n{disk_section}  </DiskSection>\n"
        f"{network_section}"
        f"  <VirtualSystem ovf:id={quoteattr(vm.name)}>\n"
        f"    <Info>A virtual machine exported by ovmweb ({escape(vm.domain_type)} guest)</Info>\n"
        f"    <Name>{name}</Name>\n{annotation}"
        f'    <OperatingSystemSection ovf:id="{CIM_OS_TYPES.get(vm.os_type, 1)}">\n'
        f"      <Info>The guest operating system</Info>\n      <Description>{escape(os_label)}</Description>\n"
        "    </OperatingSystemSection>\n"
        "    <VirtualHardwareSection>\n      <Info>Virtual hardware requirements</Info>\n"
        "      <System><vssd:ElementName>Virtual Hardware Family</vssd:ElementName><vssd:InstanceID>0</vssd:InstanceID>"
        f"<vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>"
        f"<vssd:VirtualSystemType>{VIRTUAL_SYSTEM_TYPE}</vssd:VirtualSystemType></System>\n"
        f"{''.join(items)}"
        "    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n"
    )
