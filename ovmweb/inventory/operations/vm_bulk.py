"""The ``vm.bulk`` job: the parent of one child job per virtual machine
(``services/bulk.py``), and ``vm.bulk_refused``, the child of a VM the action was refused for."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.errors import Conflict
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.registry import JobContext, operation


@operation("vm.bulk")
def vm_bulk(ctx: JobContext, *, action: str, vm_ids: list[int]) -> dict:
    """The children were submitted with the parent: it ends when they all have, failed if
    one did not succeed (``jobs.runner.maybe_finish_parent``)."""
    ctx.children_submitted = True
    children = ctx.job.children.order_by("pk")
    if not children.filter(status__in=list(JobStatus.LIVE)).exists():
        # All over before this ran (the runner only waits for live ones): say which failed.
        bad = children.exclude(status=JobStatus.SUCCESS).first()
        if bad is not None:
            raise Conflict(
                _("Child job #%(id)s (%(summary)s) failed: %(error)s")
                % {"id": bad.pk, "summary": bad.summary, "error": bad.error}
            )
    return {"action": action, "vm_ids": vm_ids, "child_job_ids": list(children.values_list("pk", flat=True))}


@operation("vm.bulk_refused")
def vm_bulk_refused(ctx: JobContext, *, reason: str) -> dict:
    """Fails with the reason the single-VM service gave, so the parent says which VM and why."""
    raise Conflict(reason)
