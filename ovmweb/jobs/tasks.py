"""The django-tasks task through which every job reaches a worker."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone
from django_tasks import task, task_backends

from .models import Job


@task()
def run_job_task(job_id: int) -> None:
    from . import live
    from .runner import run_job

    run_job(job_id)
    if not _is_database_backend():
        # RQ runs each task in a forked work horse that leaves with os._exit (no
        # atexit): send the job's last updates before returning. A database
        # worker lives on; waiting here would only delay its next job.
        live.flush()


def _is_database_backend() -> bool:
    from django_tasks_db.backend import DatabaseBackend

    return isinstance(task_backends[run_job_task.backend], DatabaseBackend)


def _task(delay: float | None):
    if not delay or not task_backends[run_job_task.backend].supports_defer:
        return run_job_task
    return run_job_task.using(run_after=timezone.now() + timedelta(seconds=delay))


def enqueue_job(job: Job, *, delay: float | None = None) -> None:
    """Queue `job` for a worker. Called by job_submit inside its transaction.

    With the database backend the task row is written in the same
    transaction as the job: both exist after commit or neither does, so no
    crash can leave a queued job without its task (the worker cannot see the
    task before the commit either). Other backends (RQ on Redis) are outside
    the database transaction, so the task is enqueued on commit. ``delay``: seconds
    before a worker may take it (a deferred job; ignored by a backend without defer).
    """
    if _is_database_backend():
        result = _task(delay).enqueue(job_id=job.pk)
        job.task_id = str(result.id)
        Job.objects.filter(pk=job.pk).update(task_id=job.task_id)
        return

    job_id = job.pk

    def _enqueue() -> None:
        result = _task(delay).enqueue(job_id=job_id)
        Job.objects.filter(pk=job_id).update(task_id=str(result.id))

    transaction.on_commit(_enqueue)
