"""Migrating a virtual machine (seed 7.7, 7.12, 7.16): live within its pool, with its
disks when they are local, or cold (a stopped VM) to another pool. The rules are in
``rules.py`` and ``placement.py``; this submits the ``vm.migrate`` job."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict, DomainNotFound, DriverError
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import job_submit

from .. import rules
from ..choices import RepositoryKind, VmAction, VmStatus
from ..models import (
    Server,
    ServerPool,
    VirtualDisk,
    VirtualMachine,
)
from .repositories import pool_name
from .vm_state import check_action, lock_vm_row, vm_set_placement


def vm_migrate(
    *,
    vm: VirtualMachine,
    user,
    target_server: Server | None = None,
    target_pool: ServerPool | None = None,
    ha_failover: bool = False,
    target_repository=None,
    after_job_id: int | None = None,
) -> Job:
    """A running VM migrates live to a server of its pool; a stopped one may go to
    another pool (unassigned there until it starts). A running VM on a local
    repository migrates with its disks copied into ``target_repository`` (default: the
    first local repository of the target server). ``after_job_id``: the job waits for
    that one to end first (several migrations run one after another, 7.7)."""
    with transaction.atomic():
        current = lock_vm_row(vm)
        if current.status == VmStatus.STOPPED:
            job = _migrate_cold(current, user=user, target_server=target_server, target_pool=target_pool)
        else:
            job = _migrate_live(
                current,
                user=user,
                target_server=target_server,
                target_pool=target_pool,
                ha_failover=ha_failover,
                target_repository=target_repository,
            )
        if after_job_id is not None:
            job.params = {**job.params, "after_job_id": after_job_id}
            Job.objects.filter(pk=job.pk).update(params=job.params)
        return job


def _migrate_cold(
    current: VirtualMachine, *, user, target_server: Server | None, target_pool: ServerPool | None
) -> Job:
    """A stopped VM goes to ``target_pool`` (or none), and onto a server there when it starts."""
    if target_server is not None:
        raise ValidationError(
            {
                "target_server": [
                    _("A stopped virtual machine migrates to a server pool; it is placed on a server when it starts.")
                ]
            }
        )
    rules.check_cold_migration(vm=current, target_pool=target_pool)
    check_pool_sees_storage(vm=current, target_pool=target_pool)
    return job_submit(
        operation="vm.migrate",
        summary=_("Migrate virtual machine %(vm)s to %(pool)s")
        % {"vm": current.name, "pool": target_pool.name if target_pool else _("unassigned")},
        user=user,
        target=current,
        lock=[current],
        params={"vm_id": current.pk, "target_pool_id": target_pool.pk if target_pool else None},
    )


def _migrate_live(
    current: VirtualMachine,
    *,
    user,
    target_server: Server | None,
    target_pool: ServerPool | None,
    ha_failover: bool,
    target_repository,
) -> Job:
    """A running VM moves to another server of its pool, with its disks if they are local."""
    check_action(current, VmAction.MIGRATE)
    if target_pool is not None and target_pool.pk != current.server_pool_id:
        raise Conflict(
            _("Live migration stays within one server pool; stop '%(vm)s' to move it to %(pool)s.")
            % {"vm": current.name, "pool": target_pool.name}
        )
    if current.server is None:
        raise Conflict(_("'%(vm)s' runs on no known server.") % {"vm": current.name})
    from .placement import check_server, choose_server

    storage = rules.needs_storage_migration(current)
    if storage:
        target_server, target_repository = _storage_migration_target(
            current, target_server=target_server, target_repository=target_repository, ha_failover=ha_failover
        )
    elif target_server is None:
        target_server = choose_server(vm=current, exclude=[current.server], ha_failover=ha_failover)
    else:
        check_server(vm=current, server=target_server, ha_failover=ha_failover)
    rules.check_live_migration(vm=current, source=current.server, target=target_server)
    params = {"vm_id": current.pk, "target_server_id": target_server.pk, "storage_migration": storage}
    if storage:
        params["target_repository_id"] = target_repository.pk
    return job_submit(
        operation="vm.migrate",
        summary=_("Live-migrate virtual machine %(vm)s to %(server)s")
        % {"vm": current.name, "server": target_server.name},
        user=user,
        target=current,
        lock=[current],
        params=params,
    )


def _storage_migration_target(
    current: VirtualMachine, *, target_server: Server | None, target_repository, ha_failover: bool
) -> tuple[Server, Any]:
    """The server and repository a VM on local storage migrates to, with its disks: the server
    must be named (or be the one of the named repository); the repository defaults to the
    server's first local one."""
    from .placement import check_server

    if target_server is None and target_repository is not None and target_repository.server_id:
        target_server = target_repository.server
    if target_server is None:
        raise ValidationError(
            {
                "target_server": [
                    _("'%(vm)s' lives in a local repository: name the server (or its repository) to migrate it to.")
                    % {"vm": current.name}
                ]
            }
        )
    if target_repository is None:
        from ..models import Repository

        target_repository = (
            Repository.objects.filter(kind=RepositoryKind.LOCAL, server=target_server).order_by("pk").first()
        )
    rules.check_storage_migration(vm=current, target=target_server, target_repository=target_repository)
    check_no_thin_clones(storage_disks(current))
    check_server(vm=current, server=target_server, ha_failover=ha_failover, repository=target_repository)
    return target_server, target_repository


def check_pool_sees_storage(*, vm: VirtualMachine, target_pool: ServerPool | None) -> None:
    """A stopped VM goes to another pool only if that pool sees its repository and every
    repository its disks and ISOs are in (it would not start there otherwise)."""
    if target_pool is None:
        return
    repositories = {vm.repository} if vm.repository is not None else set()
    for slot in vm.disk_slots.select_related("virtual_disk__repository", "iso__repository"):
        if slot.virtual_disk is not None:
            repositories.add(slot.virtual_disk.repository)
        if slot.iso is not None:
            repositories.add(slot.iso.repository)
    for repo in sorted(repositories, key=lambda r: r.pk):
        if not repo.server_pools.filter(pk=target_pool.pk).exists():
            raise Conflict(
                _(
                    "Cannot migrate '%(vm)s' to %(pool)s: repository %(repo)s is not presented to that pool, "
                    "so no server there could start it."
                )
                % {"vm": vm.name, "pool": target_pool.name, "repo": repo.name}
            )


def cold_migration_done(*, vm: VirtualMachine, target_pool: ServerPool | None, job: Job | None, log) -> dict:
    """The ``vm.migrate`` job of a stopped VM: its definition leaves its last server, and it
    is placed in ``target_pool`` (on a server there when it next starts, 7.7)."""
    from ovmweb.hypervisor.connections import driver_for

    check_pool_sees_storage(vm=vm, target_pool=target_pool)  # the pool may have changed since
    if vm.server is not None:
        try:
            driver_for(vm.server).undefine(str(vm.uuid))
        except DomainNotFound:
            pass
        except DriverError as exc:
            # Refused rather than leaving a definition behind on a server of the old pool.
            raise Conflict(
                _("%(vm)s is still defined on %(s)s, which could not undefine it (%(e)s); try again.")
                % {"vm": vm.name, "s": vm.server.name, "e": exc}
            ) from exc
    vm_set_placement(vm=vm, server_pool=target_pool, server=None, job=job)
    return {"server_pool_id": target_pool.pk if target_pool else None}


def storage_disks(vm: VirtualMachine) -> list[VirtualDisk]:
    """The disks of ``vm`` a live migration with storage copies: those in a local repository."""
    return [
        s.virtual_disk
        for s in vm.disk_slots.select_related("virtual_disk__repository", "virtual_disk__backing_disk").order_by("slot")
        if s.virtual_disk is not None and s.virtual_disk.repository.kind == RepositoryKind.LOCAL
    ]


def check_no_thin_clones(disks: list[VirtualDisk]) -> None:
    """A disk thin clones stand on cannot leave its repository: their files name its file."""
    for disk in disks:
        if disk.thin_clones.exists():
            raise Conflict(
                _("Thin clones stand on virtual disk %(disk)s: flatten them before migrating it.") % {"disk": disk.name}
            )


def _allocated(driver, disk: VirtualDisk) -> int:
    """Bytes the disk's chain holds (what a copy through the chain may write at most)."""
    total, current = 0, disk
    while current is not None:
        total += driver.volume_info(pool_name(current.repository, "disks"), current.volume).allocation_bytes
        current = current.backing_disk
    return total


def check_storage_space(*, vm: VirtualMachine, disks: list[VirtualDisk], target_repository) -> int:
    """Seed 7.7: the target repository must hold the disks, and the source repository must
    have as much free again as they use ("at least double the size of the disk space
    required by the virtual machine"). Returns the bytes to copy."""
    from .storage import check_space, repository_driver

    check_no_thin_clones(disks)
    by_source: dict = {}
    for disk in disks:
        by_source.setdefault(disk.repository, []).append(disk)
    needed = 0
    for repository, group in by_source.items():
        used = sum(_allocated(repository_driver(repository), d) for d in group)
        needed += used
        info = repository_driver(repository).pool_refresh(pool_name(repository))
        if info.available_bytes < used:
            raise Conflict(
                _(
                    "Cannot migrate '%(vm)s' with its storage: source repository %(repo)s has %(free)d bytes free and "
                    "needs at least as much as its disks use (%(used)d bytes, seed 7.7)."
                )
                % {"vm": vm.name, "repo": repository.name, "free": info.available_bytes, "used": used}
            )
    check_space(repository=target_repository, needed_bytes=needed)
    return needed
