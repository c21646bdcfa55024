"""Job operations on repositories, ISO files and virtual disks."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from django.conf import settings
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, OperationFailed
from ovmweb.hypervisor.connections import driver_for
from ovmweb.jobs.registry import JobContext, operation

from ..models import Repository, VirtualDisk
from ..services import disk_copies, fetch
from ..services import repositories as repo_services
from ..services import storage as storage_services
from ..services.storage import ISO_IMPORT_SCHEMES


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
    # Files from outside: only those that pass the image inspection become records.
    iso_volumes, disk_volumes = storage_services.found_images_check(
        repository=repository, server=servers[0], isos=isos.volumes, disks=disks.volumes, job=ctx.job
    )
    found = storage_services.repository_record_contents(
        repository=repository, isos=iso_volumes, disks=disk_volumes, job=ctx.job
    )
    repo_services.repository_record_capacity(repository=repository, info=info)
    return {"capacity_bytes": info.capacity_bytes, "available_bytes": info.available_bytes, "found": found}


def _store_iso(ctx: JobContext, repository: Repository, name: str, staged: Path) -> dict:
    try:
        storage_services.iso_check(staged, name)
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
            driver.volume_upload(
                repo_services.pool_name(repository, "isos"),
                name,
                Hashing(fh),
                size,
                progress=lambda done: ctx.progress(10 + int(85 * done / max(size, 1))),
            )
        try:
            iso = storage_services.iso_record(
                repository=repository, name=name, size_bytes=size, sha256=digest.hexdigest(), job=ctx.job
            )
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
    os.close(fd)
    try:
        # Checked against the import rules (no internal address, size and space capped,
        # abortable); fetch_to_file removes the partial file on failure.
        fetch.fetch_to_file(
            url,
            path,
            check_abort=ctx.check_abort,
            progress=lambda done, total: total and ctx.progress(int(10 * done / total)),
            schemes=ISO_IMPORT_SCHEMES,
        )
    except (fetch.FetchError, OSError) as exc:
        Path(path).unlink(missing_ok=True)
        raise OperationFailed(_("Cannot fetch %(url)s: %(error)s") % {"url": url, "error": exc}) from exc
    return _store_iso(ctx, repository, name, Path(path))


@operation("disk.create")
def disk_create(ctx: JobContext, *, disk_id: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    try:
        if not disk.sparse:
            storage_services.check_space(repository=disk.repository, needed_bytes=disk.size_bytes)
        driver = storage_services.repository_driver(disk.repository)
        info = driver.volume_create(
            repo_services.pool_name(disk.repository, "disks"),
            disk.volume,
            disk.size_bytes,
            format=disk.format,
            sparse=disk.sparse,
        )
    except Exception as exc:
        storage_services.disk_forget_failed(disk=disk, job=ctx.job, reason=str(exc))
        raise
    storage_services.disk_record_volume(disk=disk, info=info)
    return {"disk_id": disk.pk, "path": info.path, "allocation_bytes": info.allocation_bytes}


@operation("disk.resize")
def disk_resize(ctx: JobContext, *, disk_id: int, size_bytes: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    driver = storage_services.repository_driver(disk.repository)
    info = driver.volume_resize(repo_services.pool_name(disk.repository, "disks"), disk.volume, size_bytes)
    storage_services.disk_record_volume(disk=disk, info=info)
    return {"size_bytes": info.capacity_bytes}


@operation("disk.delete")
def disk_delete(ctx: JobContext, *, disk_id: int) -> dict:
    disk = VirtualDisk.objects.select_related("repository").get(pk=disk_id)
    storage_services.check_deletable(disk=disk)  # again: a VM may have started since the request
    driver = storage_services.repository_driver(disk.repository)
    driver.volume_delete(repo_services.pool_name(disk.repository, "disks"), disk.volume)
    base = disk.backing_disk
    storage_services.disk_forget(disk=disk, job=ctx.job)
    # A thin-clone base goes with its last child.
    released = disk_copies.bases_release(base=base, job=ctx.job)
    return {"deleted": disk_id, "bases_deleted": released}
