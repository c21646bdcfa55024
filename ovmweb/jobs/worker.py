"""The task worker that runs inside the `runovmweb` process (embedded default).

It is django-tasks-db's own worker loop (the same code as `manage.py
db_worker`) on a thread, so queued and interrupted work behaves exactly as
with a separate worker process.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.backends.signals import connection_created
from django.utils.crypto import get_random_string
from django_tasks import task_backends

from .registry import autodiscover
from .tasks import run_job_task

logger = logging.getLogger(__name__)
WORKER_THREAD_PREFIX = "ovmweb-job-worker"


def make_db_worker(*, interval: float, worker_id: str | None = None, batch: bool = False, max_tasks: int | None = None):
    """A django-tasks-db Worker for the queue of the job task."""
    from django_tasks_db.backend import DatabaseBackend
    from django_tasks_db.management.commands.db_worker import Worker

    backend = task_backends[run_job_task.backend]
    if not isinstance(backend, DatabaseBackend):
        raise ImproperlyConfigured(
            "The embedded worker needs the django_tasks_db database backend; with "
            "OVMWEB_REDIS_URL run RQ workers (manage.py rqworker --job-class django_tasks_rq.Job)."
        )
    return Worker(
        queue_names=[run_job_task.queue_name],
        interval=interval,
        batch=batch,
        backend_name=run_job_task.backend,
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id or f"ovmweb-{get_random_string(12)}",
        excluded_queue_names=[],
    )


def _keep_worker_connection(sender, connection, **kwargs) -> None:
    # The worker loop calls close_old_connections() around every task, which
    # with CONN_MAX_AGE=0 (the SQLite default) reconnects for every job. A
    # worker thread is long-lived: keep its connection (it is still closed and
    # reopened after an error, by close_old_connections' usability check).
    if threading.current_thread().name.startswith(WORKER_THREAD_PREFIX):
        connection.close_at = None


class EmbeddedWorker:
    """start(): recover interrupted jobs, then poll the queue on a thread; stop(): finish the current job and end."""

    def __init__(self, *, interval: float | None = None, recover: bool = True):
        self.interval = settings.OVMWEB_WORKER_INTERVAL if interval is None else interval
        self.recover = recover
        self._worker = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        from .recovery import recover_interrupted_jobs

        autodiscover()
        if self.recover:
            recovered = recover_interrupted_jobs()
            if recovered:
                logger.warning("recovered %d interrupted job(s)", len(recovered))
        self._worker = make_db_worker(interval=self.interval)
        self._thread = threading.Thread(target=self._run, name=f"{WORKER_THREAD_PREFIX}-1", daemon=True)
        self._thread.start()
        logger.info("embedded job worker started (poll interval %.2fs)", self.interval)

    def _run(self) -> None:
        connection_created.connect(_keep_worker_connection, dispatch_uid="ovmweb-worker-connection")
        try:
            self._worker.run()
        except Exception:
            logger.exception("embedded job worker stopped on an error")
        finally:
            connections.close_all()

    def stop(self, timeout: float = 30) -> None:
        if self._worker is not None:
            # The loop checks this flag between jobs and after each poll: the
            # running job is finished, not cut off.
            self._worker.running = False
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("embedded job worker still busy after %.0fs; leaving it to recovery", timeout)
            else:
                logger.info("embedded job worker stopped")
        self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()
