"""``server.evacuate``: the running VMs of a server in maintenance leave it, one after another.

One child ``vm.migrate`` job per VM, each waiting for the one before it (``after_job_id``,
seed 7.7: migrations are serial), each holding its VM's lock like a migration a user asks
for; the parent ends when they have, and fails naming a migration that did not succeed."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.jobs.registry import JobContext, operation

from ..choices import ServerStatus
from ..models import Server
from ..services import maintenance


@operation("server.evacuate")
def server_evacuate(ctx: JobContext, *, server_id: int) -> dict:
    server = Server.objects.get(pk=server_id)
    if server.status != ServerStatus.MAINTENANCE:
        ctx.log(_("%(s)s is no longer in maintenance: nothing to do.") % {"s": server.name})
        return {"migrations": 0}
    previous, moved, stayed = None, 0, 0
    for vm in maintenance.running_vms(server):
        target, why = maintenance.move_target(vm=vm, source=server)
        if target is None:
            ctx.log(_("%(vm)s stays: %(why)s") % {"vm": vm.name, "why": why})
            maintenance.evacuation_skipped(server=server, vm=vm, why=why, job=ctx.job)
            stayed += 1
            continue
        child = ctx.submit_child(
            operation="vm.migrate",
            summary=_("Live-migrate virtual machine %(vm)s to %(server)s (maintenance of %(s)s)")
            % {"vm": vm.name, "server": target.name, "s": server.name},
            target=vm,
            lock=[vm],
            params={
                "vm_id": vm.pk,
                "target_server_id": target.pk,
                "storage_migration": False,
                "after_job_id": previous.pk if previous else None,
            },
        )
        ctx.log(_("%(vm)s -> %(t)s: job #%(j)s") % {"vm": vm.name, "t": target.name, "j": child.pk})
        previous, moved = child, moved + 1
    return {"migrations": moved, "stayed": stayed}
