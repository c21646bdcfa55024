"""Virtual appliances (seed 7.2, 4.7): OVF parsing, import of an OVA built here (OVF we
write + disk made with qemu-img) by upload and of an .ovf + disk over real HTTP, into
a real repository on this machine's libvirtd; a VM created from it boots the tiny guest
from the copied disk."""

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualAppliance, VirtualApplianceVm, VirtualDisk
from ovmweb.inventory.services import appliances, vm_devices, vms
from ovmweb.inventory.services import ovf as ovf_module
from ovmweb.inventory.services.appliances import ApplianceError, parse_ovf
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

from .conftest import GUEST_DIR, http_tree, read_serial_until


def ovf_xml(
    *, systems=(("web", 2, 1024, "Oracle Linux 6 (64-bit)", ["d1"]),), disks=(("d1", "disk1.qcow2", 1),)
) -> str:
    """An OVF 1.x envelope: ``systems`` as (name, vcpus, memory MiB, OS description, disk ids),
    ``disks`` as (disk id, file name, capacity in GiB)."""
    files = "".join(f'<File ovf:id="f-{d}" ovf:href="{href}"/>' for d, href, _gib in disks)
    disk_section = "".join(
        f'<Disk ovf:diskId="{d}" ovf:fileRef="f-{d}" ovf:capacity="{gib}" ovf:capacityAllocationUnits="byte * 2^30"/>'
        for d, _href, gib in disks
    )
    vss = ""
    for name, cpus, mem, os_desc, disk_ids in systems:
        items = (
            f"<Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity></Item>"
            f"<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType>"
            f"<rasd:VirtualQuantity>{mem}</rasd:VirtualQuantity></Item>"
        )
        items += "".join(
            f"<Item><rasd:ResourceType>17</rasd:ResourceType><rasd:HostResource>ovf:/disk/{d}</rasd:HostResource></Item>"
            for d in disk_ids
        )
        vss += (
            f'<VirtualSystem ovf:id="{name}"><Info>vm</Info><Name>{name}</Name>'
            f'<OperatingSystemSection ovf:id="109"><Info>os</Info><Description>{os_desc}</Description></OperatingSystemSection>'
            f"<VirtualHardwareSection><Info>hw</Info>{items}</VirtualHardwareSection></VirtualSystem>"
        )
    if len(systems) > 1:
        vss = f'<VirtualSystemCollection ovf:id="all"><Info>all</Info>{vss}</VirtualSystemCollection>'
    return (
        '<?xml version="1.0"?><Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" '
        'xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData">'
        f"<References>{files}</References><DiskSection><Info>disks</Info>{disk_section}</DiskSection>{vss}</Envelope>"
    )


def make_ova(path: Path, ovf: str, files: dict[str, Path], *, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w") as tar:
        data = ovf.encode()
        info = tarfile.TarInfo("appliance.ovf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for name, source in files.items():
            tar.add(source, arcname=name)
        for name, blob in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def qcow2(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


# ---------------------------------------------------------------- parsing


def test_parse_one_system():
    ovf = parse_ovf(ovf_xml())
    (vm,) = ovf.vms
    assert (vm.name, vm.vcpus, vm.memory_mib, vm.os_type) == ("web", 2, 1024, "OL6")
    assert [(d.href, d.capacity_bytes) for d in vm.disks] == [("disk1.qcow2", 1 << 30)]


def test_parse_collection_and_os_mapping():
    ovf = parse_ovf(
        ovf_xml(
            systems=[
                ("db", 4, 2048, "Red Hat Enterprise Linux 7", ["d1"]),
                ("win", 1, 4096, "Microsoft Windows Server 2016", ["d2"]),
            ],
            disks=[("d1", "db.qcow2", 2), ("d2", "win.qcow2", 20)],
        )
    )
    assert [(v.name, v.os_type, v.vcpus, v.memory_mib) for v in ovf.vms] == [
        ("db", "RHEL7", 4, 2048),
        ("win", "WINDOWS", 1, 4096),
    ]
    assert ovf_module.os_type_from_ovf("Oracle Solaris 11 (64-bit)") == "SOLARIS_X86"


@pytest.mark.parametrize(
    "text,match",
    [
        ("<not-xml", "not valid XML"),
        ("<Envelope/>", "no ovf:Envelope"),
        (ovf_xml(systems=[("a", 1, 512, "Linux", ["missing"])]), "does not define"),
        (ovf_xml(disks=[("d1", "../../etc/passwd", 1)]), "plain file names"),
    ],
)
def test_parse_refuses_bad_descriptors(text, match):
    with pytest.raises(ApplianceError, match=match):
        ovf = parse_ovf(text)
        for href in ovf.files.values():
            appliances._safe_name(href)


def test_upload_must_be_an_ova(db, user):
    repo = f.RepositoryFactory()
    with pytest.raises(ValidationError, match="Upload an OVA"):
        appliances.appliance_import(user=user, repository=repo, fileobj=io.BytesIO(b"x"), filename="a.ovf")
    with pytest.raises(ValidationError, match="HTTP"):
        appliances.appliance_import(user=user, repository=repo, url="file:///etc/passwd")
    assert not Job.objects.exists()


# ---------------------------------------------------------------- real repository


def _import(user, repo, **kwargs) -> Job:
    job = appliances.appliance_import(user=user, repository=repo, **kwargs)
    run_pending_jobs()
    job.refresh_from_db()
    return job


@pytest.mark.integration
def test_import_uploaded_ova_and_create_a_vm_that_boots(real_estate, tmp_path):
    e = real_estate
    # The tiny guest's hybrid ISO as a qcow2 disk: bootable from a hard disk.
    disk = tmp_path / "disk1.qcow2"
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(GUEST_DIR / "tiny.iso"), str(disk)], check=True)
    ova = make_ova(
        tmp_path / "tiny.ova", ovf_xml(systems=[("tiny", 1, 256, "Other Linux", ["d1"])]), {"disk1.qcow2": disk}
    )
    with open(ova, "rb") as fh:
        job = _import(e["user"], e["repo"], fileobj=fh, filename="tiny.ova")
    assert job.status == JobStatus.SUCCESS, job.error
    appliance = VirtualAppliance.objects.get(name="tiny")
    directory = Path(appliances.assembly_directory(appliance))
    assert directory.parent == Path(e["repo"].path) / "Assemblies"
    assert sorted(p.name for p in directory.iterdir()) == ["appliance.ovf", "disk1.qcow2"]
    assert (directory / "disk1.qcow2").read_bytes() == disk.read_bytes()
    avm = appliance.vms.get()
    (adisk,) = avm.disks.all()
    assert (avm.vcpus, avm.memory_mib, adisk.format, adisk.size_bytes) == (1, 256, "qcow2", 1 << 30)
    # The contract's path formula names the real file.
    assert (Path(e["repo"].path) / "VirtualDisks" / adisk.volume).resolve() == (directory / "disk1.qcow2").resolve()
    with pytest.raises(ValidationError, match="belongs to a virtual appliance"):
        vm_devices.vm_disk_attach(
            vm=f.VirtualMachineFactory(server_pool=e["pool"], repository=e["repo"]),
            user=e["user"],
            virtual_disk=adisk,
            bus="sata",
        )

    vm = vms.vm_create(
        user=e["user"],
        name="from-appliance",
        server_pool=e["pool"],
        domain_type="HVM",
        os_type="OTHER_LINUX",
        source={"kind": "appliance", "appliance_vm": avm},
    )
    assert (vm.vcpus, vm.memory_mib, vm.repository) == (1, 256, e["repo"])
    run_pending_jobs()
    deploy = Job.objects.get(operation="appliance.deploy")
    assert deploy.status == JobStatus.SUCCESS, deploy.error
    slot = vm.disk_slots.get()
    copy = slot.virtual_disk
    assert copy != adisk and copy.format == "qcow2" and slot.bus == "sata"
    assert (Path(e["repo"].path) / "VirtualDisks" / copy.volume).is_file()

    start = vms.vm_action(vm=vm, action="start", user=e["user"])
    run_pending_jobs()
    start.refresh_from_db()
    vm.refresh_from_db()
    assert start.status == JobStatus.SUCCESS, start.error
    assert vm.status == VmStatus.RUNNING
    assert b"ovmweb tiny guest" in read_serial_until(vm.serial_port, b"ovmweb tiny guest")
    vms.vm_action(vm=vm, action="kill", user=e["user"])
    run_pending_jobs()


@pytest.mark.integration
def test_import_ovf_and_disks_over_http(real_estate, tmp_path, settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # http_tree serves on loopback
    e = real_estate
    tree = tmp_path / "web"
    tree.mkdir()
    (tree / "pair.ovf").write_text(
        ovf_xml(
            systems=[("a", 1, 512, "Oracle Linux 7", ["d1"]), ("b", 2, 768, "Oracle Linux 7", ["d2"])],
            disks=[("d1", "a.qcow2", 1), ("d2", "b.qcow2", 1)],
        )
    )
    qcow2(tree / "a.qcow2")
    qcow2(tree / "b.qcow2")
    with http_tree(tree) as url:
        job = _import(e["user"], e["repo"], url=f"{url}/pair.ovf")
    assert job.status == JobStatus.SUCCESS, job.error
    appliance = VirtualAppliance.objects.get(name="pair")
    assert list(appliance.vms.order_by("name").values_list("name", "vcpus", "memory_mib", "os_type")) == [
        ("a", 1, 512, "OL7"),
        ("b", 2, 768, "OL7"),
    ]
    assert VirtualDisk.objects.filter(appliance_vms__appliance=appliance).count() == 2


@pytest.mark.integration
def test_broken_appliances_leave_nothing(real_estate, tmp_path, settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the unreachable URL is on loopback
    e = real_estate
    assemblies = Path(e["repo"].path) / "Assemblies"
    # An OVA whose OVF names a disk that is not in the archive.
    ova = make_ova(tmp_path / "broken.ova", ovf_xml(), {})
    with open(ova, "rb") as fh:
        job = _import(e["user"], e["repo"], fileobj=fh, filename="broken.ova")
    assert job.status == JobStatus.FAILURE and "lacks the files disk1.qcow2" in job.error
    # A tar without a descriptor; an archive member trying to escape is refused.
    bad = tmp_path / "bad.ova"
    with tarfile.open(bad, "w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    with open(bad, "rb") as fh:
        job = _import(e["user"], e["repo"], fileobj=fh, filename="bad.ova")
    assert job.status == JobStatus.FAILURE and "plain file names" in job.error
    assert not (tmp_path.parent / "escape.txt").exists()
    # Unreachable URL.
    job = _import(e["user"], e["repo"], url="http://127.0.0.1:9/x.ova")
    assert job.status == JobStatus.FAILURE and "Cannot fetch" in job.error
    assert not VirtualAppliance.objects.exists() and not VirtualApplianceVm.objects.exists()
    assert not VirtualDisk.objects.exists()
    assert list(assemblies.iterdir()) == []
