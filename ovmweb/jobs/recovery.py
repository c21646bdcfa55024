"""Recovery of jobs interrupted by a worker that died (crash, kill, power loss).

Run once when a worker starts, before it takes new work. It assumes no other
worker is running jobs at that moment (the embedded worker is the only one of
its process; separate workers are started one by one with recovery, or with
--no-recover when others already run).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils.translation import gettext as _
from django_tasks import task_backends
from django_tasks.exceptions import TaskResultDoesNotExist

from .choices import JobStatus, Severity
from .models import Job
from .services import event_record, job_finish
from .signals import job_interrupted
from .tasks import run_job_task

logger = logging.getLogger(__name__)

INTERRUPTED = "interrupted by worker restart"


def _queued_without_task() -> list[int]:
    """QUEUED jobs that no worker will ever pick up: their task is gone, or
    finished without the job having started."""
    from django_tasks_db.backend import DatabaseBackend

    queued = list(Job.objects.filter(status=JobStatus.QUEUED).values_list("pk", "task_id"))
    if not queued:
        return []
    backend = task_backends[run_job_task.backend]
    lost: list[int] = []
    if isinstance(backend, DatabaseBackend):
        from django_tasks_db.models import DBTaskResult

        # A worker claims several tasks at a time: those it claimed but never started
        # (the job is still QUEUED) go back to the queue, to run after this restart.
        DBTaskResult.objects.filter(id__in=[tid for _pk, tid in queued if tid], status="RUNNING").update(
            status="READY", started_at=None
        )
        ready = {
            str(pk)
            for pk in DBTaskResult.objects.filter(
                id__in=[tid for _pk, tid in queued if tid], status="READY"
            ).values_list("id", flat=True)
        }
        return [pk for pk, tid in queued if not tid or tid not in ready]
    for pk, tid in queued:
        if not tid:
            continue  # enqueued on commit: the task id may not be written yet
        try:
            result = backend.get_result(tid)
        except TaskResultDoesNotExist:
            lost.append(pk)
            continue
        if str(result.status) not in {"READY"}:
            lost.append(pk)
    return lost


def recover_interrupted_jobs() -> list[Job]:
    """Fail every job that was running (or queued without a task) when its worker
    died: release its locks, record a WARNING event, then send job_interrupted
    so the owners of the target re-read its real state."""
    from .runner import abort_live_children

    ids = set(Job.objects.filter(status=JobStatus.RUNNING).values_list("pk", flat=True))
    ids.update(_queued_without_task())
    recovered: list[Job] = []
    for job in Job.objects.filter(pk__in=ids).select_related("user").order_by("pk"):
        with transaction.atomic():
            job = Job.objects.select_for_update().get(pk=job.pk)
            if job.status not in JobStatus.LIVE:
                continue
            job.waiting_for_children = False
            job.save(update_fields=["waiting_for_children"])
            job_finish(job=job, status=JobStatus.FAILURE, error=INTERRUPTED)
            event_record(
                obj=job.target,
                type="job.interrupted",
                text=_("Job #%(id)s (%(summary)s) was interrupted by a worker restart and marked failed.")
                % {"id": job.pk, "summary": job.summary},
                severity=Severity.WARNING,
                user=job.user,
                job=job,
            )
        abort_live_children(job)
        recovered.append(job)
    for job in recovered:
        logger.warning("job #%s (%s) %s", job.pk, job.summary, INTERRUPTED)
        for receiver, response in job_interrupted.send_robust(sender=Job, job=job):
            if isinstance(response, Exception):
                logger.error("job_interrupted receiver %r failed for job #%s: %r", receiver, job.pk, response)
    return recovered
