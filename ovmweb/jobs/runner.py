"""Executes one job: the only code that moves a job from QUEUED to a final status.

Called by the django-tasks task (any backend), by `testing.run_pending_jobs`
and by nothing else.
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Avg
from django.utils import timezone
from django.utils.translation import gettext as _

from . import live
from .choices import JobStatus, Severity
from .models import Job
from .registry import JobAborted, JobContext, JobDeferred, get_operation
from .services import event_record, job_finish

logger = logging.getLogger(__name__)


def run_job(job_id: int) -> str | None:
    """Run job `job_id` if it is still QUEUED; return its final (or waiting) status.

    A job that is no longer QUEUED (aborted while queued, already run by
    another worker, or failed by recovery) is left alone: the claim is one
    conditional UPDATE, so two workers never run the same job.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.QUEUED).update(status=JobStatus.RUNNING, started_at=now)
    if not claimed:
        return None
    job = Job.objects.select_related("user").get(pk=job_id)
    live.publish("job", live.job_payload(job))

    ctx = JobContext(job)
    try:
        if job.abort_requested:
            raise JobAborted(_("Aborted before it started."))
        fn = get_operation(job.operation)
        result = fn(ctx, **job.params)
    except JobDeferred as exc:
        return _defer(job, exc.delay)
    except JobAborted as exc:
        return _end(job, JobStatus.ABORTED, error=str(exc) or _("Aborted on request."), children=ctx.children_submitted)
    except Exception as exc:  # an operation's failure is the job's failure, never the worker's
        logger.warning("job #%s (%s) failed", job.pk, job.operation, exc_info=True)
        return _end(job, JobStatus.FAILURE, error=str(exc) or exc.__class__.__name__, children=ctx.children_submitted)
    return _end(job, JobStatus.SUCCESS, result=_jsonable(result), children=ctx.children_submitted)


def _defer(job: Job, delay: float) -> str:
    """Put `job` back in the queue (its locks kept) with a new task due in `delay` seconds."""
    from .tasks import enqueue_job

    with transaction.atomic():
        Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(status=JobStatus.QUEUED, started_at=None)
        job.status = JobStatus.QUEUED
        enqueue_job(job, delay=delay)
    live.publish("job", live.job_payload(job))
    return "DEFERRED"


def _jsonable(result) -> dict:
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    return {"value": result}


def _end(job: Job, status: str, *, error: str = "", result: dict | None = None, children: bool = True) -> str:
    """Finish `job`, unless children are still live: then it waits for them.
    ``children=False``: the run submitted none (JobContext.children_submitted), nothing to look for."""
    with transaction.atomic():
        if status == JobStatus.SUCCESS and children and job.children.filter(status__in=JobStatus.LIVE).exists():
            job.waiting_for_children = True
            job.result = result or {}
            job.save(update_fields=["waiting_for_children", "result"])
            # A child may have ended between our check and this commit; the
            # re-check in _child_ended runs under the same row lock.
            waiting = True
        else:
            waiting = False
            _finish_with_event(job, status, error=error, result=result)
    if waiting:
        maybe_finish_parent(job.pk)
        return "WAITING"
    if status != JobStatus.SUCCESS and children:
        # Children of a job that failed or was aborted have no reason to run.
        abort_live_children(job)
    if job.parent_id:
        maybe_finish_parent(job.parent_id)
    return status


def abort_live_children(job: Job) -> None:
    from ovmweb.errors import Conflict

    from .services import job_request_abort

    for child in job.children.filter(status__in=JobStatus.LIVE):
        try:
            job_request_abort(job=child, user=None)
        except Conflict:
            pass  # it finished meanwhile


def _finish_with_event(job: Job, status: str, *, error: str = "", result: dict | None = None) -> None:
    job_finish(job=job, status=status, error=error, result=result)
    if status == JobStatus.FAILURE:
        event_record(
            obj=job.target,
            type="job.failure",
            text=_("Job #%(id)s (%(summary)s) failed: %(error)s")
            % {"id": job.pk, "summary": job.summary, "error": error},
            severity=Severity.ERROR,
            user=job.user,
            job=job,
        )
    elif status == JobStatus.ABORTED:
        event_record(
            obj=job.target,
            type="job.aborted",
            text=_("Job #%(id)s (%(summary)s) was aborted.") % {"id": job.pk, "summary": job.summary},
            severity=Severity.WARNING,
            user=job.user,
            job=job,
        )


def maybe_finish_parent(parent_id: int) -> None:
    """End a parent whose operation returned once none of its children is live.

    The parent fails if any child did not succeed. Its progress is the mean of
    its children's while it waits.
    """
    with transaction.atomic():
        parent = Job.objects.select_for_update().filter(pk=parent_id).first()
        if parent is None or parent.status != JobStatus.RUNNING:
            return
        children = parent.children.all()
        if not parent.waiting_for_children:
            mean = children.aggregate(p=Avg("progress"))["p"] or 0
            if int(mean) > parent.progress:
                Job.objects.filter(pk=parent.pk).update(progress=int(mean))
            return
        if children.filter(status__in=JobStatus.LIVE).exists():
            mean = children.aggregate(p=Avg("progress"))["p"] or 0
            if int(mean) > parent.progress:
                parent.progress = int(mean)
                parent.save(update_fields=["progress"])
                live.publish("job", live.job_payload(parent))
            return
        bad = children.exclude(status=JobStatus.SUCCESS).order_by("pk").first()
        parent.waiting_for_children = False
        parent.save(update_fields=["waiting_for_children"])
        if bad is None:
            _finish_with_event(parent, JobStatus.SUCCESS, result=parent.result)
        elif bad.status == JobStatus.ABORTED:
            _finish_with_event(parent, JobStatus.ABORTED, error=_("Child job #%(id)s was aborted.") % {"id": bad.pk})
        else:
            _finish_with_event(
                parent,
                JobStatus.FAILURE,
                error=_("Child job #%(id)s (%(summary)s) failed: %(error)s")
                % {"id": bad.pk, "summary": bad.summary, "error": bad.error},
            )
    grandparent = Job.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    if grandparent:
        maybe_finish_parent(grandparent)
