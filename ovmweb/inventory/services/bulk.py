"""Actions on several virtual machines in one request (seed 7.7; issue 13's bulk actions).

Invariants:

- One request makes one parent job (``vm.bulk``) and one child job per VM, each the job
  the single-VM action makes (same rules, same locks), each VM checked against the
  user's permission first; a VM the action is refused for gets a child that fails with
  the reason, so the parent says which VM failed and why.
- Migrations run one after another (seed 7.7: "performed serially and not
  concurrently"): each migration child waits for the one before it (``wait_for_turn``)
  by going back to the queue, holding no worker meanwhile. The other actions run at once.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.registry import JobContext, JobDeferred
from ovmweb.jobs.services import job_submit

from ..models import Server, ServerPool, VirtualMachine
from ..permissions import authorize

# Seconds a serial child waits before it looks again at the child before it.
TURN_POLL_S = 1.0


def wait_for_turn(ctx: JobContext, after_job_id: int | None) -> None:
    """Return when job ``after_job_id`` (the previous migration of a bulk) is over; until
    then give the worker back (the job is queued again, its locks kept)."""
    if after_job_id is None:
        return
    if Job.objects.filter(pk=after_job_id, status__in=list(JobStatus.LIVE)).exists():
        raise JobDeferred(TURN_POLL_S)


BULK_ACTIONS = ("start", "stop", "restart", "kill", "migrate", "delete")


def vm_bulk(
    *,
    user,
    action: str,
    vms: list[VirtualMachine],
    target_server: Server | None = None,
    target_pool: ServerPool | None = None,
) -> Job:
    """One parent ``vm.bulk`` job and, per VM (in the order given), the child job the
    single-VM action makes, or a ``vm.bulk_refused`` child that fails with the reason the
    action was refused. Each VM is checked against ``user``'s permission first: one the
    user may not see is a 404, one they may not act on a 403, and then nothing is submitted."""
    if action not in BULK_ACTIONS:
        raise ValidationError({"action": [_("Choose one of: %(a)s.") % {"a": ", ".join(BULK_ACTIONS)}]})
    if not vms:
        raise ValidationError({"vms": [_("Name at least one virtual machine.")]})
    if len({vm.pk for vm in vms}) != len(vms):
        raise ValidationError({"vms": [_("A virtual machine is named twice.")]})
    for vm in vms:
        authorize(user, f"vm.{action}", vm)
    with transaction.atomic():
        parent = job_submit(
            operation="vm.bulk",
            summary=_("%(action)s %(n)d virtual machines") % {"action": action.capitalize(), "n": len(vms)},
            user=user,
            params={"action": action, "vm_ids": [vm.pk for vm in vms]},
        )
        previous = None
        for vm in vms:
            extra = {"after_job_id": previous} if action == "migrate" else {}
            child = _child(
                parent, user=user, action=action, vm=vm, target_server=target_server, target_pool=target_pool, **extra
            )
            previous = child.pk
    return parent


def _child(parent: Job, *, user, action: str, vm: VirtualMachine, **options) -> Job:
    """The child job of one VM, made by the single-VM service; refused: a child that fails."""
    try:
        with transaction.atomic():
            job = _submit_one(user=user, action=action, vm=vm, **options)
            Job.objects.filter(pk=job.pk).update(parent=parent)
            job.parent = parent
            return job
    except (Conflict, ValidationError) as exc:
        reason = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        return job_submit(
            operation="vm.bulk_refused",
            summary=_("%(action)s %(vm)s (refused)") % {"action": action.capitalize(), "vm": vm.name},
            user=user,
            target=vm,
            params={"reason": reason},
            parent=parent,
        )


def _submit_one(*, user, action: str, vm: VirtualMachine, target_server, target_pool, after_job_id=None) -> Job:
    from .vm_migration import vm_migrate
    from .vms import vm_action, vm_delete

    if action == "delete":
        return vm_delete(vm=vm, user=user)
    if action == "migrate":
        return vm_migrate(
            vm=vm, user=user, target_server=target_server, target_pool=target_pool, after_job_id=after_job_id
        )
    return vm_action(vm=vm, action=action, user=user)
