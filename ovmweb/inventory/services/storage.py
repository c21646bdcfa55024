"""ISO files and virtual disks in repositories, and each VM's configuration copy.

Rules kept here: an ISO must carry the ISO 9660 signature; a disk attached to
a running VM is not deleted; a disk or ISO that does not fit the repository's
free space is refused; a failed creation leaves neither a volume nor a record.
"""

from __future__ import annotations

import json
import logging
import os
import queue as queue_module
import threading
import uuid as uuidlib
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.hypervisor.base import VolumeInfo
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import staging
from ..choices import CloneType, DiskFormat, ServerStatus, Transport, VmStatus
from ..models import IsoFile, Repository, Server, VirtualDisk, VirtualMachine
from . import fetch, images
from .repositories import pool_name, repository_servers

log = logging.getLogger(__name__)

ISO9660_OFFSET = 0x8001
ISO9660_MAGIC = b"CD001"
CLONE_TYPES = {CloneType.THIN: "thin", CloneType.SPARSE: "sparse", CloneType.NON_SPARSE: "non_sparse"}


def is_iso9660(path: str | Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(ISO9660_OFFSET)
        return fh.read(5) == ISO9660_MAGIC


def iso_check(path: str | Path, name: str) -> None:
    """An ISO to store carries the ISO 9660 signature and is nothing else: it is raw data,
    so an image format's magic at its start (a qcow2 with ``CD001`` planted at 0x8001 and
    a backing file ``/etc/shadow``) is refused, since libvirt probes the files of its pools
    and would follow that backing file. ``images.image_check`` raises with the reason."""
    if not is_iso9660(path):
        raise Conflict(_("%(name)s is not an ISO image (no ISO 9660 signature).") % {"name": name})
    images.image_check(path, "raw", name=name)


def _check_iso_name(repository: Repository, name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise ValidationError({"name": [_("Give a plain file name.")]})
    if IsoFile.objects.filter(repository=repository, name=name).exists():
        raise ValidationError({"name": [_("An ISO file of that name is already in the repository.")]})


def iso_upload(*, repository: Repository, user, name: str, fileobj, size: int) -> Job:
    """Stage the upload on the manager (staging.py: size cap, free space, removed when the
    job ends however it ends), then a job streams it into ISOs/ of the repository."""
    _check_iso_name(repository, name)
    with staging.staged(fileobj) as staged, transaction.atomic():
        return job_submit(
            operation="iso.upload",
            summary=_("Upload ISO %(name)s") % {"name": name},
            user=user,
            target=repository,
            params={
                "repository_id": repository.pk,
                "name": name,
                "staged": str(staged),
                "size": os.path.getsize(staged),
            },
        )


# An ISO is imported over HTTP(S) only; the job fetches it under the same rules (fetch.py).
ISO_IMPORT_SCHEMES = frozenset({"http", "https"})


def iso_import(*, repository: Repository, user, url: str) -> Job:
    if not url.startswith(("http://", "https://")):
        raise ValidationError({"url": [_("Give an HTTP or HTTPS URL.")]})
    fetch.validate_url(url, field="url", schemes=ISO_IMPORT_SCHEMES)
    name = url.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
    _check_iso_name(repository, name)
    with transaction.atomic():
        return job_submit(
            operation="iso.import",
            summary=_("Import ISO %(name)s") % {"name": name},
            user=user,
            target=repository,
            params={"repository_id": repository.pk, "name": name, "url": url},
        )


@transaction.atomic
def iso_record(
    *, repository: Repository, name: str, size_bytes: int, sha256: str = "", job: Job | None = None
) -> IsoFile:
    iso = IsoFile(repository=repository, name=name, size_bytes=size_bytes, sha256=sha256)
    iso.full_clean()
    iso.save()
    event_record(
        obj=iso,
        type="iso.imported",
        text=_("ISO %(name)s is in repository %(repo)s.") % {"name": name, "repo": repository.name},
        job=job,
    )
    return iso


def disk_create(
    *, user, repository: Repository, name: str, size_bytes: int, sparse: bool = True, shareable: bool = False
) -> Job:
    """Record the disk and queue ``disk.create``; the job's target is the new VirtualDisk.

    A shareable disk is raw: QEMU cannot let two guests write one qcow2 image (its metadata
    would be corrupted), and libvirt refuses to start a VM with a shareable qcow2 disk."""
    fmt = DiskFormat.RAW if shareable else DiskFormat.QCOW2
    with transaction.atomic():
        disk = VirtualDisk(
            name=name,
            repository=repository,
            volume=f"{uuidlib.uuid4().hex}.{'img' if shareable else 'qcow2'}",
            format=fmt,
            size_bytes=size_bytes,
            sparse=sparse,
            shareable=shareable,
        )
        disk.full_clean()
        disk.save()
        return job_submit(
            operation="disk.create",
            summary=_("Create virtual disk %(name)s") % {"name": name},
            user=user,
            target=disk,
            params={"disk_id": disk.pk},
            lock=[disk],
        )


def disk_resize(*, disk: VirtualDisk, user, size_bytes: int) -> Job:
    if size_bytes < disk.size_bytes:
        raise ValidationError({"size_bytes": [_("A virtual disk can only grow.")]})
    with transaction.atomic():
        return job_submit(
            operation="disk.resize",
            summary=_("Resize virtual disk %(name)s") % {"name": disk.name},
            user=user,
            target=disk,
            params={"disk_id": disk.pk, "size_bytes": size_bytes},
            lock=[disk],
        )


def check_deletable(*, disk: VirtualDisk) -> None:
    """A disk in use by a running VM, or under thin clones, is not deleted."""
    running = disk.slots.filter(vm__status__in=list(VmStatus.ACTIVE)).values_list("vm__name", flat=True).first()
    if running:
        raise Conflict(
            _("Virtual disk %(disk)s is attached to %(vm)s, which is running.") % {"disk": disk.name, "vm": running}
        )
    if disk.thin_clones.exists():
        raise Conflict(_("Virtual disk %(disk)s is the base of thin clones.") % {"disk": disk.name})


def disk_delete(*, disk: VirtualDisk, user) -> Job:
    check_deletable(disk=disk)
    with transaction.atomic():
        return job_submit(
            operation="disk.delete",
            summary=_("Delete virtual disk %(name)s") % {"name": disk.name},
            user=user,
            target=disk,
            params={"disk_id": disk.pk},
            lock=[disk],
        )


@transaction.atomic
def disk_forget_failed(*, disk: VirtualDisk, job: Job | None = None, reason: str = "") -> None:
    """A disk whose volume could not be made leaves no record behind."""
    event_record(
        obj=None,
        type="disk.create_failed",
        text=_("Virtual disk %(name)s was not created: %(reason)s") % {"name": disk.name, "reason": reason},
        job=job,
    )
    VirtualDisk.objects.filter(pk=disk.pk).delete()


def disk_record_volume(*, disk: VirtualDisk, info: VolumeInfo) -> VirtualDisk:
    """Size and allocation of the disk as its server reports them."""
    VirtualDisk.objects.filter(pk=disk.pk).update(
        size_bytes=info.capacity_bytes, allocation_bytes=info.allocation_bytes
    )
    disk.size_bytes, disk.allocation_bytes = info.capacity_bytes, info.allocation_bytes
    return disk


def found_format(vol: VolumeInfo) -> str:
    """The format a file found in VirtualDisks/ is recorded as (libvirt's probe; raw unless qcow2)."""
    return vol.format if vol.format in ("raw", "qcow2") else "raw"


def found_images_check(
    *, repository: Repository, server: Server, isos: list[VolumeInfo], disks: list[VolumeInfo], job: Job | None = None
) -> tuple[list[VolumeInfo], list[VolumeInfo]]:
    """The ISOs and disks found in a repository that may become records. Whoever can write
    to the repository's share could drop a qcow2 whose backing file is the server's
    /etc/shadow there: each file not yet recorded is inspected on ``server`` as the format
    it would be recorded as (``images.remote_image_check``), and one refused stays
    unrecorded, with a warning event that names the reason."""
    from ovmweb.jobs.choices import Severity

    from .server_files import server_files

    known_isos = set(repository.iso_files.values_list("name", flat=True))
    known_disks = set(VirtualDisk.objects.filter(volume__in=[v.name for v in disks]).values_list("volume", flat=True))
    new = [(v, "raw") for v in isos if v.name not in known_isos and not v.name.startswith(".")]
    new += [(v, found_format(v)) for v in disks if v.name not in known_disks and not v.name.endswith(".tmp")]
    refused = set()
    with server_files(server) as files:
        for vol, fmt in new:
            try:
                images.remote_image_check(vol.path, fmt, run=files.run)
            except images.UnsafeImage as exc:
                refused.add(vol.path)
                event_record(
                    obj=repository, type="repository.file_refused", job=job, severity=Severity.WARNING, text=str(exc)
                )
    return [v for v in isos if v.path not in refused], [v for v in disks if v.path not in refused]


@transaction.atomic
def repository_record_contents(
    *, repository: Repository, isos: list[VolumeInfo], disks: list[VolumeInfo], job: Job | None = None
) -> dict:
    """Files found in a repository that the database does not know become ISO and disk records."""
    found = {"isos": 0, "disks": 0}
    known_isos = set(repository.iso_files.values_list("name", flat=True))
    for vol in isos:
        if vol.name not in known_isos and not vol.name.startswith("."):
            iso_record(repository=repository, name=vol.name, size_bytes=vol.capacity_bytes, job=job)
            found["isos"] += 1
    known_disks = set(VirtualDisk.objects.filter(volume__in=[v.name for v in disks]).values_list("volume", flat=True))
    for vol in disks:
        if vol.name not in known_disks and not vol.name.endswith(".tmp"):
            disk = VirtualDisk(
                name=vol.name,
                repository=repository,
                volume=vol.name,
                size_bytes=max(vol.capacity_bytes, 1),
                allocation_bytes=vol.allocation_bytes,
                format=found_format(vol),
            )
            disk.full_clean()
            disk.save()
            found["disks"] += 1
    return found


@transaction.atomic
def disk_forget(*, disk: VirtualDisk, job: Job | None = None) -> None:
    """Remove the record of a deleted disk; stopped VMs that had it lose that slot."""
    for slot in disk.slots.select_related("vm"):
        event_record(
            obj=slot.vm,
            type="vm.disk_removed",
            job=job,
            text=_("Virtual disk %(disk)s deleted: removed from slot %(slot)d of %(vm)s.")
            % {"disk": disk.name, "slot": slot.slot, "vm": slot.vm.name},
        )
        slot.delete()
    event_record(
        obj=disk.repository,
        type="disk.deleted",
        text=_("Virtual disk %(name)s deleted.") % {"name": disk.name},
        job=job,
    )
    disk.delete()


def repository_driver(repository: Repository):
    """A driver of a server that sees ``repository`` (for a shared one, any)."""
    from ovmweb.hypervisor.connections import driver_for

    servers = repository_servers(repository)
    if not servers:
        raise Conflict(_("Repository %(name)s is not presented to any server.") % {"name": repository.name})
    return driver_for(servers[0])


def check_space(*, repository: Repository, needed_bytes: int) -> None:
    info = repository_driver(repository).pool_refresh(pool_name(repository))
    if needed_bytes > info.available_bytes:
        raise Conflict(
            _("Repository %(name)s is full: %(need)s bytes needed, %(free)s available.")
            % {"name": repository.name, "need": needed_bytes, "free": info.available_bytes}
        )


def disk_clone(
    *,
    disk: VirtualDisk,
    target_repository: Repository,
    clone_type: str,
    name: str,
    job: Job | None = None,
    owned: bool = False,
) -> VirtualDisk:
    """Clone synchronously (inside a VM clone/move job): thin (both the source and the clone
    become overlays on the source's frozen file, ``disk_copies.thin_clone``), sparse copy,
    or fully allocated copy. The record exists only if the volume does. The new volume is
    in ``job``'s journal before it exists; ``owned``: it stays there (the job deletes the
    copy if it ends before a VM uses it) until the caller's ``journal_remove``."""
    kind = CLONE_TYPES[CloneType(clone_type)]
    if kind == "thin" and target_repository.pk != disk.repository_id and target_repository.kind != disk.repository.kind:
        raise Conflict(_("A thin clone must stay where its base disk is visible."))
    if kind == "thin":
        from .disk_copies import thin_clone

        return thin_clone(disk=disk, target_repository=target_repository, name=name, job=job, owned=owned)
    if kind == "non_sparse":
        check_space(repository=target_repository, needed_bytes=disk.size_bytes)
    from .storage_journal import journal_add, journal_remove

    driver = repository_driver(disk.repository)
    # A shareable disk stays raw: libvirt gives shared access to raw images only.
    fmt = "raw" if disk.shareable else "qcow2"
    volume = f"{uuidlib.uuid4().hex}.{'img' if fmt == 'raw' else 'qcow2'}"
    journal_add(job, repository=target_repository, volume=volume, owned=True)
    info = driver.volume_clone(
        pool_name(disk.repository, "disks"),
        disk.volume,
        pool_name(target_repository, "disks"),
        volume,
        clone_type=kind,
        source_format=disk.format,
        format=fmt,
    )
    try:
        with transaction.atomic():
            clone = VirtualDisk(
                name=name,
                repository=target_repository,
                volume=volume,
                size_bytes=disk.size_bytes,
                allocation_bytes=info.allocation_bytes,
                format=fmt,
                sparse=kind != "non_sparse",
                shareable=disk.shareable,
            )
            clone.full_clean()
            clone.save()
            event_record(
                obj=clone,
                type="disk.cloned",
                text=_("Virtual disk %(name)s cloned from %(src)s (%(kind)s).")
                % {"name": name, "src": disk.name, "kind": kind},
                job=job,
            )
    except Exception:
        driver.volume_delete(pool_name(target_repository, "disks"), volume)
        journal_remove(job, repository=target_repository, volume=volume)
        raise
    if not owned:
        journal_remove(job, repository=target_repository, volume=volume)
    return clone


def vm_config(vm: VirtualMachine) -> dict:
    """What a repository keeps of a VM so that it describes its VMs without the database."""
    return {
        "uuid": str(vm.uuid),
        "name": vm.name,
        "description": vm.description,
        "domain_type": vm.domain_type,
        "os_type": vm.os_type,
        "vcpus": vm.vcpus,
        "max_vcpus": vm.max_vcpus,
        "memory_mib": vm.memory_mib,
        "max_memory_mib": vm.max_memory_mib,
        "huge_pages": vm.huge_pages,
        "keymap": vm.keymap,
        "mouse_device": vm.mouse_device,
        "boot_order": vm.boot_order,
        "cpu_pinning": vm.cpu_pinning,
        "pvm_boot_url": vm.pvm_boot_url,
        "kernel_args": vm.kernel_args,
        "disks": [
            {
                "slot": s.slot,
                "kind": s.kind,
                "bus": s.bus,
                "volume": s.virtual_disk.volume if s.virtual_disk_id else None,
                "iso": s.iso.name if s.iso_id else None,
            }
            for s in vm.disk_slots.select_related("virtual_disk", "iso").order_by("slot")
        ],
        "vnics": [
            {"mac": n.mac, "model": n.model, "network": n.network.name if n.network_id else None}
            for n in vm.vnics.select_related("network")
        ],
    }


def _config_target(vm: VirtualMachine) -> tuple[Server, str, str] | None:
    """(server to write through, path of vm.json, its content), or None if the VM has no repository on a server."""
    if vm.repository_id is None:
        return None
    servers = repository_servers(vm.repository)
    if not servers:
        return None
    path = f"{vm.repository.path}/VirtualMachines/{vm.uuid}/vm.json"
    return servers[0], path, json.dumps(vm_config(vm), indent=2, sort_keys=True)


def _laid_out_dir(path: str) -> str:
    return path.rsplit("/", 2)[0]  # <repo>/VirtualMachines


def _write_local(path: str, data: str, *, only_if_laid_out: bool) -> str:
    if only_if_laid_out and not Path(_laid_out_dir(path)).is_dir():
        return ""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(data)
    tmp.replace(target)
    return path


def _write_sftp(server: Server, path: str, data: str, *, only_if_laid_out: bool) -> str:
    import paramiko

    from ovmweb.tunnels.pool import transport_for

    # The server's shared, pinned SSH transport: no new connection per write.
    sftp = paramiko.SFTPClient.from_transport(transport_for(server))
    try:
        if only_if_laid_out:
            try:
                sftp.stat(_laid_out_dir(path))
            except OSError:
                return ""
        try:
            sftp.mkdir(path.rsplit("/", 1)[0])
        except OSError:
            pass  # exists
        with sftp.open(path + ".tmp", "w") as fh:
            fh.write(data)
        sftp.posix_rename(path + ".tmp", path)
    finally:
        sftp.close()
    return path


def _is_local(server: Server) -> bool:
    return server.transport == Transport.LOCAL or bool(settings.OVMWEB_HYPERVISOR_URI)


def vm_config_write(*, vm: VirtualMachine) -> str:
    """Write ``<repo>/VirtualMachines/<uuid>/vm.json`` now, on a server that sees the VM's repository."""
    target = _config_target(vm)
    if target is None:
        return ""
    server, path, data = target
    if _is_local(server):
        return _write_local(path, data, only_if_laid_out=False)
    return _write_sftp(server, path, data, only_if_laid_out=False)


_config_queue = threading.local()


def vm_config_schedule(*, vm_id: int) -> None:
    """Refresh the VM's vm.json once the current transaction commits (create, update,
    disks, VNICs). Several changes in one transaction make one write."""
    queue = getattr(_config_queue, "ids", None)
    if queue is None:
        queue = _config_queue.ids = set()
    queue.add(vm_id)
    # Every change registers the flush; the first flush after the commit takes the
    # whole queue, the others find it empty (and a rolled-back change is at worst
    # written at the next commit, which rewrites the same truth from the database).
    transaction.on_commit(_config_flush)


def _config_flush() -> None:
    queue = getattr(_config_queue, "ids", None)
    if not queue:
        return
    ids = sorted(queue)
    queue.clear()
    for vm in VirtualMachine.objects.filter(pk__in=ids, repository__isnull=False).select_related("repository"):
        target = _config_target(vm)
        if target is None or target[0].status != ServerStatus.RUNNING:
            continue  # not while its server is unreachable; the next change writes it
        server, path, data = target
        if _is_local(server):
            try:
                _write_local(path, data, only_if_laid_out=True)
            except OSError as exc:
                log.warning("could not write %s: %s", path, exc)
        else:
            # Network I/O never runs in the committing (request) thread.
            _remote_writer().put((server, path, data))


_writer_lock = threading.Lock()
_writer: queue_module.Queue | None = None


def _remote_writer() -> queue_module.Queue:
    """One daemon thread writing vm.json copies over SFTP, in order; it never touches the database."""
    global _writer
    with _writer_lock:
        if _writer is None:
            _writer = queue_module.Queue()

            def run(q=_writer) -> None:
                while True:
                    server, path, data = q.get()
                    try:
                        # A copy for the repository; the database stays the truth.
                        _write_sftp(server, path, data, only_if_laid_out=True)
                    except Exception as exc:
                        log.warning("could not write %s on %s: %s", path, server.name, exc.__class__.__name__)

            threading.Thread(target=run, name="ovmweb-vm-config-writer", daemon=True).start()
        return _writer
