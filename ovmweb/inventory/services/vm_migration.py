"""Migrating a virtual machine (seed 7.7, 7.12, 7.16): live within its pool, with its
disks when they are local, or cold (a stopped VM) to another pool. The rules are in
``rules.py`` and ``placement.py``; this submits the ``vm.migrate`` job."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import job_submit

from .. import rules
from ..choices import RepositoryKind, VmAction, VmStatus
from ..models import (
    Server,
    ServerPool,
    VirtualMachine,
)
from .vm_state import check_action, lock_vm_row


def vm_migrate(
    *,
    vm: VirtualMachine,
    user,
    target_server: Server | None = None,
    target_pool: ServerPool | None = None,
    ha_failover: bool = False,
    target_repository=None,
) -> Job:
    """A running VM migrates live to a server of its pool; a stopped one may go to
    another pool (unassigned there until it starts). A running VM on a local
    repository migrates with its disks copied into ``target_repository`` (default: the
    first local repository of the target server)."""
    with transaction.atomic():
        current = lock_vm_row(vm)
        if current.status == VmStatus.STOPPED:
            return _migrate_cold(current, user=user, target_server=target_server, target_pool=target_pool)
        return _migrate_live(
            current,
            user=user,
            target_server=target_server,
            target_pool=target_pool,
            ha_failover=ha_failover,
            target_repository=target_repository,
        )


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
    check_server(vm=current, server=target_server, ha_failover=ha_failover, repository=target_repository)
    return target_server, target_repository
