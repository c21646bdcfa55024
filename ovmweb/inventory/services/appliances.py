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
import os
import shutil
import tarfile
import uuid as uuidlib
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

from .. import staging
from ..choices import DiskFormat
from ..models import Repository, VirtualAppliance, VirtualApplianceVm, VirtualDisk
from . import images
from .fetch import validate_url
from .ovf import ApplianceError, Ovf, parse_ovf
from .repositories import pool_name
from .storage import repository_driver

# Image formats an appliance disk may be recorded as (found by its magic); raw is the rest.
IMPORTABLE_FORMATS = {"qcow2": DiskFormat.QCOW2, "vmdk": DiskFormat.VMDK}
DEFAULT_OVA_MAX_MEMBERS = 256
DEFAULT_OVA_MAX_BYTES = 2**40
_COPY_CHUNK = 1024 * 1024


def _safe_name(href: str) -> str:
    """A referenced file is a plain name next to the descriptor: nothing else is accepted."""
    name = PurePosixPath(href).name
    if not href or name != href or name in (".", "..") or name.startswith("."):
        raise ApplianceError(
            _("The OVF refers to %(href)r; only plain file names next to the descriptor are allowed.") % {"href": href}
        )
    return name


def staging_dir() -> Path:
    return staging.staging_dir()


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
    if url:
        validate_url(url, field="url", schemes={"http", "https"})  # the rules the job fetches under
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
        params["staged"] = str(_stage_upload(fileobj))
    else:
        params["url"] = url
    try:
        with transaction.atomic():
            return job_submit(
                operation="appliance.import",
                summary=_("Import virtual appliance %(name)s") % {"name": name},
                user=user,
                target=repository,
                params=params,
            )
    except BaseException:
        if "staged" in params:  # no job will ever own it
            staging.discard(params["staged"])
        raise


def ova_limits() -> tuple[int, int]:
    """(most members, most bytes in all) an OVA may hold (settings ``OVMWEB_OVA_MAX_MEMBERS``, ``..._BYTES``)."""
    return (
        int(getattr(settings, "OVMWEB_OVA_MAX_MEMBERS", DEFAULT_OVA_MAX_MEMBERS)),
        int(getattr(settings, "OVMWEB_OVA_MAX_BYTES", DEFAULT_OVA_MAX_BYTES)),
    )


def _member_kind(member: tarfile.TarInfo) -> str | None:
    """What a member is when it is not a plain regular file, or None. Links could point the
    extraction (or a later reader) anywhere on the manager; a GNU sparse member would
    expand to a size its archive does not show."""
    if member.issym():
        return _("a symbolic link")
    if member.islnk():
        return _("a hard link")
    if member.isdev():
        return _("a device or FIFO")
    if member.isdir():
        return _("a directory")
    if member.issparse():
        return _("a sparse file")
    if not member.isfile():
        return _("not a regular file")
    return None


def _check_member(member: tarfile.TarInfo, count: int, total: int) -> str:
    """The plain name ``member`` is extracted to, after the archive's caps; ``count`` and
    ``total`` include it. Checked on the header, before a byte of it is written."""
    max_members, max_bytes = ova_limits()
    if count > max_members:
        raise ApplianceError(_("The OVA holds more than %(n)d files.") % {"n": max_members})
    kind = _member_kind(member)
    if kind is not None:
        raise ApplianceError(
            _("The OVA member %(name)r is %(kind)s; only regular files are accepted.")
            % {"name": member.name[:200], "kind": kind}
        )
    if total > max_bytes:
        raise ApplianceError(_("The OVA's files add up to more than %(n)d bytes.") % {"n": max_bytes})
    return _safe_name(member.name)


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
    # O_EXCL | O_NOFOLLOW: a second member of the same name, or anything already at the
    # target, stops the import instead of being written through.
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        raise ApplianceError(_("The OVA holds %(name)r twice.") % {"name": target.name}) from exc
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(tar.extractfile(member), out, _COPY_CHUNK)


def _stage_upload(fileobj) -> Path:
    """The uploaded OVA in the staging directory; one larger than the OVA cap is refused
    (and removed) as it arrives."""
    _max_members, max_bytes = ova_limits()
    too_large = ValidationError({"file": [_("The OVA is larger than %(n)d bytes.") % {"n": max_bytes}]})
    size = getattr(fileobj, "size", None)
    if size is not None and size > max_bytes:
        raise too_large
    # staging.stage: the upload cap and free space; a file Django already streamed to the
    # staging area is renamed, not copied.
    staged = staging.stage(fileobj, suffix=".ova")
    if staged.stat().st_size > max_bytes:  # a size that was not what it said
        staging.discard(staged)
        raise too_large
    return staged


def unpack_ova(ova: Path, into: Path) -> Path:
    """Extract the OVA's regular files (plain names only, within the caps) and return the
    descriptor's path. Members are read one by one: an archive of a million empty headers
    is refused at the cap, not listed first."""
    descriptor, count, total = None, 0, 0
    try:
        with tarfile.open(ova) as tar:
            while (member := tar.next()) is not None:
                count, total = count + 1, total + member.size
                name = _check_member(member, count, total)
                _extract(tar, member, into / name)
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
    hrefs = list(parse_ovf(descriptor.read_bytes()).files.values())
    max_members, _max_bytes = ova_limits()
    if len(hrefs) >= max_members:
        raise ApplianceError(_("The OVF refers to more than %(n)d files.") % {"n": max_members - 1})
    for href in hrefs:
        fetch(urljoin(url, href), into / _safe_name(href))
    return descriptor


def disk_format(path: Path) -> str:
    """What a disk file really is, by its magic (never by ``qemu-img``'s probe): qcow2,
    VMDK, or raw when it has none. Other image formats are refused: recorded as raw, they
    would be read as what they are by libvirt's volume copy."""
    with open(path, "rb") as fh:
        real = images.sniff_format(fh.read(images.HEAD_BYTES))
    if real is None:
        return DiskFormat.RAW
    if real not in IMPORTABLE_FORMATS:
        raise ApplianceError(
            _("Disk %(file)s is a %(format)s image, which cannot be imported; convert it to VMDK, QCOW2 or raw.")
            % {"file": path.name, "format": real.upper()}
        )
    return IMPORTABLE_FORMATS[real]


def _inspected_format(path: Path, declared: str) -> str:
    """The format ``path`` is recorded as, once ``images.image_check`` found it self-contained.

    The format recorded is the one its magic shows, never the OVF's word: a qcow2 the OVF
    calls raw is then inspected as the qcow2 every later reader (libvirt probes the volumes
    of its pools) takes it for. Declared raw and not raw is refused outright all the same:
    that disagreement is how such an attack looks."""
    fmt = disk_format(path)
    if declared == "raw" and fmt != DiskFormat.RAW:
        raise images.UnsafeImage(
            _("%(file)s was refused: it is declared raw but is a %(real)s image.") % {"file": path.name, "real": fmt}
        )
    images.image_check(path, fmt)
    return fmt


def _referenced_formats(ovf: Ovf, folder: Path) -> dict[str, str]:
    """href -> recorded format of every file the OVF references (disks, and any other file:
    none is uploaded into a repository before it passed the inspection)."""
    declared = {d.href: d.declared_format for vm in ovf.vms for d in vm.disks}
    return {href: _inspected_format(folder / _safe_name(href), declared.get(href, "")) for href in ovf.files.values()}


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
    # Before anything is uploaded: a file we cannot record truthfully, or that names another
    # file (a backing file, a data file, extents), stops the import here.
    formats = _referenced_formats(ovf, descriptor.parent)
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
        info = driver.volume_clone(
            source_pool,
            source_volume,
            target_pool,
            volume,
            clone_type="sparse",
            source_format=disk.format,
            format="qcow2",
        )
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
