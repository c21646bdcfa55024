"""Server maintenance mode and the live migrations that empty a server (seed 7.7, 6.12).

Rules kept here (and only here):
- a server enters MAINTENANCE only from RUNNING and leaves it only by being taken out
  (``server_set_maintenance``); a rediscovery, a reconcile or a spell UNREACHABLE does not
  end it (``Server.maintenance`` remembers it; ``maintenance_or_running`` gives the status
  a server that answers again returns to);
- placement never puts a VM on a server in MAINTENANCE (it takes only RUNNING servers);
- entering maintenance queues one parent job (``server.evacuate``) that live-migrates the
  server's running VMs away one after another; stopped VMs stay where they are, and a VM
  that cannot move (pinned CPUs, no server fits, local disks) is named in the job's log
  and stays too;
- which VM may be moved, and where, for maintenance and for DRS alike: ``move_target``.
"""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import Severity
from ovmweb.jobs.live import publish
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit

from .. import rules
from ..choices import ServerStatus, VmStatus
from ..models import Server, VirtualMachine
from .servers import server_payload


def server_set_maintenance(*, server: Server, user, on: bool) -> Job | None:
    """Put ``server`` in maintenance (returns the evacuation job) or take it out (None)."""
    with transaction.atomic():
        server = Server.objects.select_for_update().get(pk=server.pk)
        if on:
            if server.status != ServerStatus.RUNNING:
                raise Conflict(
                    _("Server %(s)s is %(status)s: only a running server can enter maintenance.")
                    % {"s": server.name, "status": server.status}
                )
            server.status = ServerStatus.MAINTENANCE
            server.maintenance = True
            text = _("Server %(s)s entered maintenance: no new VMs there; its running VMs are migrated away.")
        else:
            if not server.maintenance:
                raise Conflict(_("Server %(s)s is not in maintenance.") % {"s": server.name})
            server.maintenance = False
            if server.status == ServerStatus.MAINTENANCE:  # an UNREACHABLE one stays so until it answers
                server.status = ServerStatus.RUNNING
            text = _("Server %(s)s left maintenance.")
        server.save(update_fields=["status", "maintenance", "updated_at"])
        event_record(obj=server, type="server.maintenance", text=text % {"s": server.name}, user=user)
        publish("server", server_payload(server))
        if not on:
            return None
        return job_submit(
            operation="server.evacuate",
            summary=_("Migrate the running virtual machines away from %(s)s") % {"s": server.name},
            user=user,
            target=server,
            params={"server_id": server.pk},
        )


def maintenance_or_running(server: Server) -> str:
    """The status of a server that answers (again): MAINTENANCE while it is in maintenance."""
    return ServerStatus.MAINTENANCE if server.maintenance else ServerStatus.RUNNING


def move_target(*, vm: VirtualMachine, source: Server) -> tuple[Server | None, str]:
    """Where ``vm`` (running on ``source``) may be live-migrated by maintenance or DRS, or
    (None, why not). Placement's rules hold (memory, anti-affinity, repository, the inbound
    migration lock: no HA override here), a pinned VM never moves (7.16), and disks on a
    local repository are not copied by an automatic move."""
    from .placement import choose_server

    if vm.cpu_pinning:
        return None, _("its virtual CPUs are pinned (hard partitioning)")
    if rules.needs_storage_migration(vm):
        return None, _("its disks are on a local repository")
    try:
        target = choose_server(vm=vm, exclude=[source])
        rules.check_live_migration(vm=vm, source=source, target=target)
    except Conflict as exc:
        return None, str(exc)
    return target, ""


def running_vms(server: Server):
    return (
        VirtualMachine.objects.filter(server=server, status=VmStatus.RUNNING)
        .select_related("server", "server_pool", "repository")
        .order_by("name", "id")
    )


def evacuation_skipped(*, server: Server, vm: VirtualMachine, why: str, job: Job) -> None:
    event_record(
        obj=vm,
        type="server.maintenance",
        severity=Severity.WARNING,
        job=job,
        text=_("%(vm)s stays on %(s)s (in maintenance): %(why)s") % {"vm": vm.name, "s": server.name, "why": why},
    )


__all__ = ["move_target", "running_vms", "server_set_maintenance"]
