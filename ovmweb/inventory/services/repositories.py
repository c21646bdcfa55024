"""Storage repositories: libvirt storage pools laid out like Oracle VM's.

A repository at ``path`` holds VirtualMachines/, VirtualDisks/, ISOs/,
Templates/ and Assemblies/. libvirt lists only the top level of a ``dir``
pool, so each server gets one pool for the repository itself (``dir`` at
``path``, or ``netfs`` mounting the NFS export there) and one ``dir`` pool per
sub-directory that holds volumes (VirtualDisks/, ISOs/).

Rules kept here: a repository path must already exist on its servers (it is
never created behind the administrator's back); a failed creation leaves no
pool and no repository record behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ovmweb.hypervisor.base import PoolInfo, PoolSpec
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from ..choices import RepositoryBackend, RepositoryKind
from ..models import Repository, Server, ServerPool

SUBDIRS = ("VirtualMachines", "VirtualDisks", "ISOs", "Templates", "Assemblies")
VOLUME_SUBDIRS = {"disks": "VirtualDisks", "isos": "ISOs"}


def pool_name(repository: Repository, part: str = "") -> str:
    # Named after the directory, not the database id: a pool *is* its directory,
    # and several ovmweb databases (tests, re-installs) share one libvirtd.
    digest = hashlib.sha256(repository.path.encode()).hexdigest()[:12]
    return f"ovmweb-{digest}" + (f"-{part}" if part else "")


def repository_servers(repository: Repository) -> list[Server]:
    """The servers that see ``repository``: its own server, or every server of the pools it is presented to."""
    if repository.kind == RepositoryKind.LOCAL:
        return [repository.server] if repository.server_id else []
    return list(Server.objects.filter(server_pool__in=repository.server_pools.all()).order_by("pk"))


def repository_payload(repository: Repository) -> dict:
    return {
        "id": repository.pk,
        "name": repository.name,
        "capacity_bytes": repository.capacity_bytes,
        "available_bytes": repository.available_bytes,
    }


def repository_create(
    *,
    user,
    name: str,
    kind: str,
    path: str,
    server: Server | None = None,
    backend: str = RepositoryBackend.DIR,
    nfs_server: str = "",
    nfs_export: str = "",
    server_pools: Iterable[ServerPool] = (),
) -> Job:
    with transaction.atomic():
        repository = Repository(
            name=name,
            kind=kind,
            path=path.rstrip("/") or "/",
            server=server,
            backend=backend,
            nfs_server=nfs_server,
            nfs_export=nfs_export,
        )
        repository.full_clean()
        repository.save()
        repository.server_pools.set(list(server_pools))
        event_record(
            obj=repository,
            type="repository.created",
            text=_("Repository %(name)s created at %(path)s.") % {"name": repository.name, "path": repository.path},
            user=user,
        )
        return job_submit(
            operation="repository.create",
            summary=_("Create repository %(name)s") % {"name": name},
            user=user,
            target=repository,
            params={"repository_id": repository.pk},
            lock=[repository],
        )


def repository_refresh(*, repository: Repository, user) -> Job:
    with transaction.atomic():
        return job_submit(
            operation="repository.refresh",
            summary=_("Refresh repository %(name)s") % {"name": repository.name},
            user=user,
            target=repository,
            params={"repository_id": repository.pk},
            lock=[repository],
        )


def repository_present(*, repository: Repository, server_pool: ServerPool, user) -> Job:
    """Present a shared repository to a server pool; its servers get the pools at the refresh."""
    with transaction.atomic():
        repository.server_pools.add(server_pool)
        event_record(
            obj=repository,
            type="repository.presented",
            text=_("Repository %(name)s presented to %(pool)s.") % {"name": repository.name, "pool": server_pool.name},
            user=user,
        )
    return repository_refresh(repository=repository, user=user)


def define_pools(driver, repository: Repository) -> PoolInfo:
    """Define the repository's pools on one server (idempotent) and lay out its directories.

    The sub-directories without volumes are made by building a throw-away pool:
    libvirt creates the directory and forgets the pool, the directory stays.
    """
    root_spec = PoolSpec(
        name=pool_name(repository),
        path=repository.path,
        backend=repository.backend,
        nfs_server=repository.nfs_server,
        nfs_export=repository.nfs_export,
    )
    # A dir repository's path must exist already; an NFS mount point is created.
    info = driver.pool_define(root_spec, build=repository.backend == RepositoryBackend.NETFS)
    for sub in SUBDIRS:
        part = next((k for k, v in VOLUME_SUBDIRS.items() if v == sub), None)
        spec = PoolSpec(name=pool_name(repository, part or sub.lower()), path=f"{repository.path}/{sub}")
        driver.pool_define(spec, build=True)
        if part is None:
            driver.pool_undefine(spec.name)
    return info


def undefine_pools(driver, repository: Repository) -> None:
    for part in (*VOLUME_SUBDIRS, ""):
        driver.pool_undefine(pool_name(repository, part))


@transaction.atomic
def repository_record_capacity(*, repository: Repository, info: PoolInfo) -> Repository:
    repository = Repository.objects.select_for_update().get(pk=repository.pk)
    repository.capacity_bytes = info.capacity_bytes
    repository.allocation_bytes = info.allocation_bytes
    repository.available_bytes = info.available_bytes
    repository.refreshed_at = timezone.now()
    repository.save(
        update_fields=["capacity_bytes", "allocation_bytes", "available_bytes", "refreshed_at", "updated_at"]
    )
    publish("repository", repository_payload(repository))
    return repository


@transaction.atomic
def repository_forget(*, repository: Repository, job: Job | None = None, reason: str = "") -> None:
    """Remove a repository record that could not be made (nothing half made left behind)."""
    event_record(
        obj=None,
        type="repository.create_failed",
        text=_("Repository %(name)s was not created: %(reason)s") % {"name": repository.name, "reason": reason},
        job=job,
    )
    Repository.objects.filter(pk=repository.pk).delete()
