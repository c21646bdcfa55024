"""Job operations on repositories, ISO files and virtual disks."""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.hypervisor.base import OperationFailed
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.registry import JobContext, operation
from ovmweb.jobs.services import event_record

from ..exceptions import Conflict
from ..models import Repository, VirtualDisk
from ..services import repositories as repo_services
from ..services import storage as storage_services


@operation("repository.create")
def repository_create(ctx: JobContext, *, repository_id: int) -> dict:
    repository = Repository.objects.get(pk=repository_id)
    servers = repo_services.repository_servers(repository)
    done = []
    try:
        if not servers:
            raise Conflict(_("Repository %(name)s has no server to live on.") % {"name": repository.name})
        info = None
        for server in servers:
            ctx.check_abort()
            driver = driver_for(server)
            done.append(driver)
            info = repo_services.define_pools(driver, repository)
            ctx.log(_("Pools defined on %(server)s.") % {"server": server.name})
        repo_services.repository_record_capacity(repository=repository, info=info)
    except Exception as exc:
        for driver in done:
            try:
                repo_services.undefine_pools(driver, repository)
            except Exception:  # best effort: the first error is the one to report
                pass
        repo_services.repository_forget(repository=repository, job=ctx.job, reason=str(exc))
        raise
    return {"repository_id": repository.pk, "capacity_bytes": info.capacity_bytes}


@operation("repository.refresh")
def repository_refresh(ctx: JobContext, *, repository_id: int) -> dict:
    """Capacity and contents discovered from disk: unknown ISOs and disks become records."""
    repository = Repository.objects.get(pk=repository_id)
    servers = repo_services.repository_servers(repository)
    if not servers:
        raise Conflict(_("Repository %(name)s is not presented to any server.") % {"name": repository.name})
    for server in servers:
        repo_services.define_pools(driver_for(server), repository)
    driver = driver_for(servers[0])
    info = driver.pool_refresh(repo_services.pool_name(repository))
    isos = driver.pool_refresh(repo_services.pool_name(repository, "isos"))
    disks = driver.pool_refresh(repo_services.pool_name(repository, "disks"))
    found = {"isos": 0, "disks": 0}
    with transaction.atomic():
        known_isos = set(repository.iso_files.values_list("name", flat=True))
        for vol in isos.volumes:
            if vol.name not in known_isos and not vol.name.startswith("."):
                storage_services.iso_record(repository=repository, name=vol.name, size_bytes=vol.capacity_bytes, job=ctx.job)
                found["isos"] += 1
        known_disks = set(VirtualDisk.objects.filter(repository=repository).values_list("volume", flat=True))
        for vol in disks.volumes:
            if vol.name not in known_disks and not VirtualDisk.objects.filter(volume=vol.name).exists():
                disk = VirtualDisk(name=vol.name, repository=repository, volume=vol.name, size_bytes=max(vol.capacity_bytes, 1),
                                   allocation_bytes=vol.allocation_bytes, format=vol.format if vol.format in ("raw", "qcow2") else "raw")
                disk.full_clean()
                disk.save()
                found["disks"] += 1
    repo_services.repository_record_capacity(repository=repository, info=info)
    return {"capacity_bytes": info.capacity_bytes, "available_bytes": info.available_bytes, "found": found}


def _store_iso(ctx: JobContext, repository: Repository, name: str, staged: Path) -> dict:
    try:
        if not storage_services.is_iso9660(staged):
            raise OperationFailed(_("%(name)s is not an ISO image (no ISO 9660 signature).") % {"name": name})
        size = staged.stat().st_size
        storage_services.check_space(repository=repository, needed_bytes=size)
        driver = storage_services.repository_driver(repository)
        digest = hashlib.sha256()

        class Hashing:
            def __init__(self, fh):
                self.fh = fh

            def read(self, n):
                data = self.fh.read(n)
                digest.update(data)
                return data

        with open(staged, "rb") as fh:
            driver.volume_upload(repo_services.pool_name(repository, "isos"), name, Hashing(fh), size,
                                 progress=lambda done: ctx.progress(10 + int(85 * done / max(size, 1))))
        try:
            iso = storage_services.iso_record(repository=repository, name=name, size_bytes=size, sha256=digest.hexdigest(), job=ctx.job)
        except Exception:
            driver.volume_delete(repo_services.pool_name(repository, "isos"), name)
            raise
        return {"iso_id": iso.pk, "size_bytes": size}
    finally:
        staged.unlink(missing_ok=True)


@operation("iso.upload")
def iso_upload(ctx: JobContext, *, repository_id: int, name: str, staged: str, size: int) -> dict:
    return _store_iso(ctx, Repository.objects.get(pk=repository_id), name, Path(staged))


@operation("iso.import")
def iso_import(ctx: JobContext, *, repository_id: int, name: str, url: str) -> dict:
    repository = Repository.objects.get(pk=repository_id)
    staging = Path(settings.VAR_DIR) / "uploads"
    staging.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(dir=staging)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=30) as response:  # noqa: S310 - http(s) only, checked
            total = int(response.headers.get("Content-Length") or 0)
            done = 0
            while chunk := response.read(1024 * 1024):
                out.write(chunk)
                done += len(chunk)
                if total:
                    ctx.progress(int(10 * done / total))
    except OSError as exc:
        Path(path).unlink(missing_ok=True)
        raise OperationFailed(_("Cannot fetch %(url)s: %(error)s") % {"url": url, "error": exc}) from exc
    return _store_iso(ctx, repository, name, Path(path))


def _forget_disk(disk: VirtualDisk, job, reason: str) -> None:
    with transaction.atomic():
        event_record(obj=None, type="disk.create_failed", text=_("Virtual disk %(name)s was not created: %(reason)s")
                     % {"name": disk.name, "reason": reason}, job=job)
        VirtualDisk.objects.filter(pk=disk.pk).delete()


@operation("disk.create")
def disk_create(ctx: JobContext, *, disk_id: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    try:
        if not disk.sparse:
            storage_services.check_space(repository=disk.repository, needed_bytes=disk.size_bytes)
        driver = storage_services.repository_driver(disk.repository)
        info = driver.volume_create(repo_services.pool_name(disk.repository, "disks"), disk.volume, disk.size_bytes,
                                    format=disk.format, sparse=disk.sparse)
    except Exception as exc:
        _forget_disk(disk, ctx.job, str(exc))
        raise
    VirtualDisk.objects.filter(pk=disk.pk).update(allocation_bytes=info.allocation_bytes)
    return {"disk_id": disk.pk, "path": info.path, "allocation_bytes": info.allocation_bytes}


@operation("disk.resize")
def disk_resize(ctx: JobContext, *, disk_id: int, size_bytes: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    driver = storage_services.repository_driver(disk.repository)
    info = driver.volume_resize(repo_services.pool_name(disk.repository, "disks"), disk.volume, size_bytes)
    VirtualDisk.objects.filter(pk=disk.pk).update(size_bytes=info.capacity_bytes, allocation_bytes=info.allocation_bytes)
    return {"size_bytes": info.capacity_bytes}


@operation("disk.delete")
def disk_delete(ctx: JobContext, *, disk_id: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    storage_services.check_deletable(disk=disk)  # again: a VM may have started since the request
    driver = storage_services.repository_driver(disk.repository)
    driver.volume_delete(repo_services.pool_name(disk.repository, "disks"), disk.volume)
    storage_services.disk_forget(disk=disk, job=ctx.job)
    return {"deleted": disk_id}

