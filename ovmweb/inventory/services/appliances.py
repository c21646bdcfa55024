"""Virtual appliances (seed 7.2, chapter 4.7): an OVF descriptor with its disks, one or
more virtual machines, imported into a repository's ``Assemblies/<dir>/``.

Import is a job: the OVA (a tar holding the .ovf and its disk files) is uploaded or
fetched from a URL — or a bare .ovf is fetched from a URL together with the disk
files it references next to it — then the files are streamed into the repository
through libvirt's volume API (one ``dir`` pool per assembly directory, so it works on
local and SSH servers alike), and the OVF's virtual systems become
``VirtualApplianceVm`` rows with ``VirtualDisk`` rows for their disk files.

An appliance disk's ``volume`` is ``../Assemblies/<dir>/<file>``: the contract's
``<repo>/VirtualDisks/<volume>`` then still names the real file. Appliance disks are
never attached to a VM; creating a VM from an appliance VM copies them into
VirtualDisks/ (``appliance_disk_copy``).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tarfile
import uuid as uuidlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import urljoin, urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.hypervisor.base import PoolSpec
from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from ..choices import DiskFormat, OsType
from ..models import Repository, VirtualAppliance, VirtualApplianceVm, VirtualDisk
from .repositories import pool_name
from .storage import repository_driver

OVF_NS = "http://schemas.dmtf.org/ovf/envelope/1"
RASD_NS = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
# CIM resource types used by OVF hardware items.
RESOURCE_CPU, RESOURCE_MEMORY, RESOURCE_DISK = "3", "4", "17"
QCOW2_MAGIC = b"QFI\xfb"
# VMDK hosted sparse / streamOptimized extents ("KDMV") and ESX sparse ("COWD"), or a text descriptor.
VMDK_MAGICS = (b"KDMV", b"COWD")
VMDK_DESCRIPTOR = b"# Disk DescriptorFile"
VMDK_DESCRIPTOR_PROBE = 512
# (offset, magic, name): images qemu would read as what they are, but that we would record as raw.
UNSUPPORTED_MAGICS = ((0, b"conectix", "VHD"), (0, b"vhdxfile", "VHDX"), (0x40, b"\x7f\x10\xda\xbe", "VDI"))


class ApplianceError(Conflict):
    """An appliance that cannot be imported or deployed, with the reason."""


@dataclass
class OvfDisk:
    disk_id: str
    href: str
    capacity_bytes: int


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


def _units(text: str | None, default: int) -> int:
    """``byte * 2^30`` and friends -> multiplier in bytes (DSP0004 programmatic units)."""
    if not text:
        return default
    value = text.replace(" ", "").lower()
    match = re.fullmatch(r"byte(?:\*(\d+)\^(\d+))?", value)
    if match:
        return int(match.group(1)) ** int(match.group(2)) if match.group(1) else 1
    named = {"kilobytes": 2**10, "kb": 2**10, "megabytes": 2**20, "mb": 2**20, "gigabytes": 2**30, "gb": 2**30}
    if value in named:
        return named[value]
    raise ApplianceError(_("Unknown allocation unit %(u)r in the OVF.") % {"u": text})


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


def parse_ovf(text: str | bytes) -> Ovf:  # noqa: C901
    """Every VirtualSystem of the descriptor (also inside a VirtualSystemCollection)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ApplianceError(_("The OVF descriptor is not valid XML: %(e)s") % {"e": exc}) from exc
    if root.tag != f"{{{OVF_NS}}}Envelope":
        raise ApplianceError(_("This is not an OVF 1.x/2.x descriptor (no ovf:Envelope)."))
    files = {_attr(f, "id"): _attr(f, "href") for f in root.iter(f"{{{OVF_NS}}}File")}
    disks = {}
    for disk in root.iter(f"{{{OVF_NS}}}Disk"):
        file_ref = _attr(disk, "fileRef")
        if file_ref and file_ref not in files:
            raise ApplianceError(
                _("Disk %(d)s refers to a file %(f)s the OVF does not list.")
                % {"d": _attr(disk, "diskId"), "f": file_ref}
            )
        capacity = int(_attr(disk, "capacity", "0") or 0) * _units(_attr(disk, "capacityAllocationUnits"), 1)
        disks[_attr(disk, "diskId")] = OvfDisk(
            disk_id=_attr(disk, "diskId"), href=files.get(file_ref, ""), capacity_bytes=capacity
        )
    vms = []
    for system in root.iter(f"{{{OVF_NS}}}VirtualSystem"):
        vm = OvfVm(name=(system.findtext(f"{{{OVF_NS}}}Name") or _attr(system, "id") or "vm").strip())
        os_section = system.find(f"{{{OVF_NS}}}OperatingSystemSection")
        if os_section is not None:
            vm.os_type = os_type_from_ovf(
                os_section.findtext(f"{{{OVF_NS}}}Description") or _attr(os_section, "osType")
            )
        for item in system.iter(f"{{{OVF_NS}}}Item"):
            kind = item.findtext(f"{{{RASD_NS}}}ResourceType")
            quantity = item.findtext(f"{{{RASD_NS}}}VirtualQuantity")
            if kind == RESOURCE_CPU and quantity:
                vm.vcpus = max(int(quantity), 1)
            elif kind == RESOURCE_MEMORY and quantity:
                scale = _units(item.findtext(f"{{{RASD_NS}}}AllocationUnits"), 2**20)
                vm.memory_mib = max(int(quantity) * scale // 2**20, 16)
            elif kind == RESOURCE_DISK:
                ref = (item.findtext(f"{{{RASD_NS}}}HostResource") or "").rsplit("/", 1)[-1]
                if ref not in disks:
                    raise ApplianceError(
                        _("%(vm)s uses disk %(d)s, which the OVF does not define.") % {"vm": vm.name, "d": ref}
                    )
                vm.disks.append(disks[ref])
        vms.append(vm)
    if not vms:
        raise ApplianceError(_("The OVF descriptor defines no virtual system."))
    return Ovf(files=files, vms=vms)


def _safe_name(href: str) -> str:
    """A referenced file is a plain name next to the descriptor: nothing else is accepted."""
    name = PurePosixPath(href).name
    if not href or name != href or name in (".", "..") or name.startswith("."):
        raise ApplianceError(
            _("The OVF refers to %(href)r; only plain file names next to the descriptor are allowed.") % {"href": href}
        )
    return name


def staging_dir() -> Path:
    path = Path(settings.VAR_DIR) / "uploads"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------
# import
# --------------------------------------------------------------------------


def appliance_import(
    *, user, repository: Repository, name: str = "", url: str = "", fileobj=None, filename: str = ""
) -> Job:
    """Import an OVA (uploaded, or from an HTTP URL) or an .ovf with its disks from an HTTP URL."""
    if bool(url) == (fileobj is not None):
        raise ValidationError({"url": [_("Give either a URL or an uploaded OVA file.")]})
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise ValidationError({"url": [_("Give an HTTP or HTTPS URL.")]})
    source_name = PurePosixPath(urlsplit(url).path if url else filename).name
    if fileobj is not None and not source_name.lower().endswith(".ova"):
        raise ValidationError(
            {
                "file": [
                    _(
                        "Upload an OVA (the .ovf and its disks in one tar); a bare .ovf can only be "
                        "imported from a URL next to its disks."
                    )
                ]
            }
        )
    name = (name or PurePosixPath(source_name).stem).strip()
    if not name:
        raise ValidationError({"name": [_("Name the appliance.")]})
    if VirtualAppliance.objects.filter(repository=repository, name=name).exists():
        raise ValidationError(
            {
                "name": [
                    _("Repository %(repo)s already has an appliance %(name)s.")
                    % {"repo": repository.name, "name": name}
                ]
            }
        )
    params = {"repository_id": repository.pk, "name": name}
    if fileobj is not None:
        staged = staging_dir() / f"{uuidlib.uuid4().hex}.ova"
        with open(staged, "wb") as out:
            shutil.copyfileobj(fileobj, out, 1024 * 1024)
        params["staged"] = str(staged)
    else:
        params["url"] = url
    with transaction.atomic():
        return job_submit(
            operation="appliance.import",
            summary=_("Import virtual appliance %(name)s") % {"name": name},
            user=user,
            target=repository,
            params=params,
        )


def unpack_ova(ova: Path, into: Path) -> Path:
    """Extract the OVA's regular files (plain names only) and return the descriptor's path."""
    try:
        with tarfile.open(ova) as tar:
            descriptor = None
            for member in tar.getmembers():
                if not member.isfile():
                    continue
                name = _safe_name(member.name)
                source = tar.extractfile(member)
                with open(into / name, "wb") as out:
                    shutil.copyfileobj(source, out, 1024 * 1024)
                if name.lower().endswith(".ovf") and descriptor is None:
                    descriptor = into / name
    except tarfile.TarError as exc:
        raise ApplianceError(_("The file is not an OVA (a tar archive): %(e)s") % {"e": exc}) from exc
    if descriptor is None:
        raise ApplianceError(_("The OVA holds no .ovf descriptor."))
    return descriptor


def fetch_ovf_tree(url: str, into: Path, fetch) -> Path:
    """Fetch an .ovf and every file it references, relative to its URL. ``fetch(url, path)``."""
    descriptor = into / _safe_name(PurePosixPath(urlsplit(url).path).name or "appliance.ovf")
    fetch(url, descriptor)
    for href in parse_ovf(descriptor.read_bytes()).files.values():
        fetch(urljoin(url, href), into / _safe_name(href))
    return descriptor


def disk_format(path: Path) -> str:
    """What a disk file really is, by its header (as ``qemu-img`` probes it): qcow2, VMDK
    (sparse or streamOptimized extents, or a descriptor), or raw. Formats that would be
    misread as raw are refused."""
    with open(path, "rb") as fh:
        head = fh.read(VMDK_DESCRIPTOR_PROBE)
    if head[:4] == QCOW2_MAGIC:
        return DiskFormat.QCOW2
    if head[:4] in VMDK_MAGICS or head.lstrip().startswith(VMDK_DESCRIPTOR):
        return DiskFormat.VMDK
    for offset, magic, name in UNSUPPORTED_MAGICS:
        if head[offset : offset + len(magic)] == magic:
            raise ApplianceError(
                _("Disk %(file)s is a %(format)s image, which cannot be imported; convert it to VMDK, QCOW2 or raw.")
                % {"file": path.name, "format": name}
            )
    return DiskFormat.RAW


def assembly_directory(appliance: VirtualAppliance) -> str:
    return str(PurePosixPath(appliance.ovf_path).parent)


def assembly_pool(driver, repository: Repository, directory: str) -> str:
    """The libvirt pool of one assembly directory (defined idempotently; building creates the directory)."""
    part = "asm-" + hashlib.sha256(directory.encode()).hexdigest()[:10]
    name = pool_name(repository, part)
    driver.pool_define(PoolSpec(name=name, path=directory), build=True)
    return name


def appliance_store(
    *, repository: Repository, name: str, descriptor: Path, job: Job | None = None, progress=None
) -> VirtualAppliance:
    """Upload the descriptor and its disk files into ``Assemblies/<dir>/`` and record the appliance.
    Nothing is left behind if any step fails."""
    text = descriptor.read_text()
    ovf = parse_ovf(text)
    files = [descriptor] + [descriptor.parent / _safe_name(h) for h in ovf.files.values()]
    missing = [p.name for p in files if not p.is_file()]
    if missing:
        raise ApplianceError(_("The appliance lacks the files %(f)s its OVF refers to.") % {"f": ", ".join(missing)})
    # Before anything is uploaded: a disk we cannot record truthfully stops the import here.
    formats = {d.href: disk_format(descriptor.parent / _safe_name(d.href)) for vm in ovf.vms for d in vm.disks}
    directory = f"{repository.path}/Assemblies/{slugify(name)[:40] or 'appliance'}-{uuidlib.uuid4().hex[:8]}"
    driver = repository_driver(repository)
    pool = assembly_pool(driver, repository, directory)
    uploaded = []
    try:
        total = sum(p.stat().st_size for p in files) or 1
        done = 0
        for path in files:
            size = path.stat().st_size
            with open(path, "rb") as fh:
                driver.volume_upload(pool, path.name, fh, size)
            uploaded.append(path.name)
            done += size
            if progress:
                progress(done, total)
        with transaction.atomic():
            appliance = VirtualAppliance(
                name=name, repository=repository, ovf_path=f"{directory}/{descriptor.name}", ovf_xml=text
            )
            appliance.full_clean()
            appliance.save()
            rel = f"../Assemblies/{PurePosixPath(directory).name}"
            disk_rows: dict[str, VirtualDisk] = {}
            for vm in ovf.vms:
                row = VirtualApplianceVm(
                    appliance=appliance,
                    name=vm.name[:128],
                    vcpus=vm.vcpus,
                    memory_mib=vm.memory_mib,
                    os_type=vm.os_type,
                )
                row.full_clean()
                row.save()
                for disk in vm.disks:
                    if disk.href not in disk_rows:
                        path = descriptor.parent / _safe_name(disk.href)
                        disk_rows[disk.href] = VirtualDisk(
                            name=f"{name}/{disk.href}"[:255],
                            repository=repository,
                            volume=f"{rel}/{disk.href}",
                            size_bytes=max(disk.capacity_bytes, path.stat().st_size, 1),
                            allocation_bytes=path.stat().st_size,
                            format=formats[disk.href],
                        )
                        disk_rows[disk.href].full_clean()
                        disk_rows[disk.href].save()
                    row.disks.add(disk_rows[disk.href])
            event_record(
                obj=appliance,
                type="appliance.imported",
                job=job,
                text=_("Virtual appliance %(name)s imported into %(repo)s with %(n)d virtual machine(s).")
                % {"name": name, "repo": repository.name, "n": len(ovf.vms)},
            )
        # The pool was only the way in; it is defined again whenever a VM is made from it.
        driver.pool_undefine(pool)
    except BaseException:
        for volume in uploaded:
            try:
                driver.volume_delete(pool, volume)
            except Exception:  # best effort: the first error is the one to report
                pass
        _forget_assembly(repository, directory)
        raise
    return appliance


def _forget_assembly(repository: Repository, directory: str) -> None:
    from .repositories import repository_servers
    from .server_files import server_files

    driver = repository_driver(repository)
    part = "asm-" + hashlib.sha256(directory.encode()).hexdigest()[:10]
    driver.pool_undefine(pool_name(repository, part))
    servers = repository_servers(repository)
    if servers:
        with server_files(servers[0]) as files:
            files.run(["rmdir", directory])


# --------------------------------------------------------------------------
# delete
# --------------------------------------------------------------------------


def check_appliance_idle(appliance: VirtualAppliance) -> None:
    """An appliance that a live job is still importing, or copying disks from, stays."""
    live = Job.objects.filter(status__in=list(JobStatus.LIVE))
    deploying = live.filter(operation="appliance.deploy", params__appliance_id=appliance.pk).first()
    if deploying is not None:
        raise Conflict(
            _(
                "Virtual appliance %(name)s is in use by job #%(job)s (%(summary)s); delete it when that job "
                "has finished."
            )
            % {"name": appliance.name, "job": deploying.pk, "summary": deploying.summary}
        )
    # The import job records the appliance only at its end, and finishes just after.
    importing = live.filter(
        operation="appliance.import", params__repository_id=appliance.repository_id, params__name=appliance.name
    ).first()
    if importing is not None:
        raise Conflict(
            _("Virtual appliance %(name)s is still being imported by job #%(job)s.")
            % {"name": appliance.name, "job": importing.pk}
        )


def check_appliance_kept(appliance: VirtualAppliance) -> None:
    """Nothing new is made from an appliance whose deletion is queued or running (its files
    would be gone before the copy). Call inside the caller's transaction: the row lock
    orders it against ``appliance_delete``."""
    list(VirtualAppliance.objects.select_for_update().filter(pk=appliance.pk).values_list("pk", flat=True))
    deleting = Job.objects.filter(
        status__in=list(JobStatus.LIVE), operation="appliance.delete", params__appliance_id=appliance.pk
    ).first()
    if deleting is not None:
        raise Conflict(
            _("Virtual appliance %(name)s is being deleted by job #%(job)s.")
            % {"name": appliance.name, "job": deleting.pk}
        )


def appliance_delete(*, appliance: VirtualAppliance, user) -> Job:
    """Queue the deletion of an appliance: its files in Assemblies/ and its records (VMs
    made from it keep their own copies of its disks). Refused (409) while a job imports
    or deploys it."""
    with transaction.atomic():
        current = VirtualAppliance.objects.select_for_update().get(pk=appliance.pk)
        check_appliance_idle(current)
        return job_submit(
            operation="appliance.delete",
            summary=_("Delete virtual appliance %(name)s") % {"name": current.name},
            user=user,
            target=current,
            lock=[current],
            params={"appliance_id": current.pk},
        )


def _owned_directory(appliance: VirtualAppliance) -> str | None:
    """The assembly directory of the appliance, only if it is one of its repository's
    ``Assemblies/<dir>``: nothing else is ever removed on its behalf."""
    if not appliance.ovf_path:
        return None
    directory = PurePosixPath(assembly_directory(appliance))
    if directory.parent != PurePosixPath(appliance.repository.path) / "Assemblies" or directory.name in ("", ".", ".."):
        return None
    return str(directory)


def appliance_remove(*, appliance: VirtualAppliance, job: Job | None = None) -> None:
    """Remove the appliance's files through the repository's server, then its records
    (the ``appliance.delete`` job calls this)."""
    from .repositories import repository_servers
    from .server_files import server_files

    check_appliance_idle(appliance)  # again: a deploy may have been queued since the request
    repository = appliance.repository
    directory = _owned_directory(appliance)
    removed = []
    if directory is not None:
        driver = repository_driver(repository)
        pool = assembly_pool(driver, repository, directory)
        try:
            for volume in driver.pool_refresh(pool).volumes:
                driver.volume_delete(pool, volume.name)
                removed.append(volume.name)
        finally:
            driver.pool_undefine(pool)
        servers = repository_servers(repository)
        if servers:
            with server_files(servers[0]) as files:
                rc, _out, err = files.run(["rmdir", directory])
            if rc != 0:
                event_record(
                    obj=repository,
                    type="appliance.directory_left",
                    job=job,
                    severity=Severity.WARNING,
                    text=_("Directory %(dir)s was left in place: %(err)s") % {"dir": directory, "err": err.strip()},
                )
    with transaction.atomic():
        disks = list(
            VirtualDisk.objects.filter(appliance_vms__appliance=appliance).distinct().values_list("pk", flat=True)
        )
        name = appliance.name
        appliance.delete()
        VirtualDisk.objects.filter(pk__in=disks).delete()
        event_record(
            obj=repository,
            type="appliance.deleted",
            job=job,
            text=_("Virtual appliance %(name)s deleted from %(repo)s (%(n)d file(s) removed).")
            % {"name": name, "repo": repository.name, "n": len(removed)},
        )


# --------------------------------------------------------------------------
# deploy: a VM from an appliance VM
# --------------------------------------------------------------------------


def appliance_disk_copy(
    *, disk: VirtualDisk, appliance: VirtualAppliance, target_repository: Repository, name: str, job: Job | None = None
) -> VirtualDisk:
    """Copy one appliance disk into ``target_repository``'s VirtualDisks/ as a sparse qcow2
    (libvirt converts other formats). The record exists only if the volume does."""
    driver = repository_driver(appliance.repository)
    directory = assembly_directory(appliance)
    source_pool = assembly_pool(driver, appliance.repository, directory)
    source_volume = PurePosixPath(disk.volume).name
    volume = f"{uuidlib.uuid4().hex}.qcow2"
    target_pool = pool_name(target_repository, "disks")
    try:
        info = driver.volume_clone(source_pool, source_volume, target_pool, volume, clone_type="sparse", format="qcow2")
    finally:
        driver.pool_undefine(source_pool)
    try:
        with transaction.atomic():
            copy = VirtualDisk(
                name=name,
                repository=target_repository,
                volume=volume,
                size_bytes=max(info.capacity_bytes, 1),
                allocation_bytes=info.allocation_bytes,
                format=DiskFormat.QCOW2,
                sparse=True,
            )
            copy.full_clean()
            copy.save()
            event_record(
                obj=copy,
                type="disk.cloned",
                job=job,
                text=_("Virtual disk %(name)s copied from appliance %(app)s.") % {"name": name, "app": appliance.name},
            )
    except Exception:
        driver.volume_delete(target_pool, volume)
        raise
    return copy


def is_appliance_disk(disk: VirtualDisk) -> bool:
    return disk.appliance_vms.exists()
