"""`manage.py runjobworker`: a job worker in its own process (scale-out).

With the database backend it runs django-tasks-db's worker loop; with
OVMWEB_REDIS_URL it runs an RQ worker. Either way it first recovers jobs
interrupted by a previous worker's death (skip with --no-recover when other
workers are already running jobs).
"""

from __future__ import annotations

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django_tasks import task_backends

from ovmweb.jobs import live
from ovmweb.jobs.registry import autodiscover
from ovmweb.jobs.tasks import run_job_task


class Command(BaseCommand):
    help = "Run a job worker process (database backend, or RQ when OVMWEB_REDIS_URL is set)."

    def add_arguments(self, parser):
        parser.add_argument("--no-recover", action="store_true", help="Do not fail jobs left RUNNING.")
        parser.add_argument("--interval", type=float, default=settings.OVMWEB_WORKER_INTERVAL)
        parser.add_argument(
            "--threads",
            type=int,
            default=settings.OVMWEB_WORKER_THREADS,
            help="Jobs run at once (database backend; default OVMWEB_WORKER_THREADS).",
        )
        parser.add_argument("--batch", action="store_true", help="Run what is queued, then exit (database backend).")

    def handle(self, *args, no_recover: bool, interval: float, batch: bool, threads: int, **options):
        from django_tasks_db.backend import DatabaseBackend

        from ovmweb.jobs.recovery import recover_interrupted_jobs
        from ovmweb.jobs.worker import make_db_worker

        live.warn_if_isolated("runjobworker")
        autodiscover()
        if not no_recover:
            for job in recover_interrupted_jobs():
                self.stderr.write(f"job #{job.pk} ({job.summary}) was interrupted: marked failed")
        if isinstance(task_backends[run_job_task.backend], DatabaseBackend):
            worker = make_db_worker(interval=interval, batch=batch, threads=max(1, threads))
            worker.configure_signals()
            worker.run()
        else:
            call_command("rqworker", run_job_task.queue_name, job_class="django_tasks_rq.Job", burst=batch)
