"""The task worker that runs inside the `runovmweb` process (embedded default).

It is django-tasks-db's worker loop (`manage.py db_worker`'s Worker, claiming
several ready tasks per transaction) on a thread, so queued and interrupted
work behaves exactly as with a separate worker process.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connections
from django.db.backends.signals import connection_created
from django.db.utils import OperationalError
from django.utils import timezone
from django.utils.crypto import get_random_string
from django_tasks import task_backends
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from .registry import autodiscover
from .tasks import run_job_task

logger = logging.getLogger(__name__)
WORKER_THREAD_PREFIX = "ovmweb-job-worker"


# Ready tasks one worker claims per transaction (setting OVMWEB_WORKER_CLAIM).
DEFAULT_CLAIM = 8


def make_db_worker(
    *,
    interval: float,
    worker_id: str | None = None,
    batch: bool = False,
    max_tasks: int | None = None,
    claim: int | None = None,
):
    """A worker for the queue of the job task: django-tasks-db's, claiming several tasks at a time."""
    backend = task_backends[run_job_task.backend]
    if not isinstance(backend, DatabaseBackend):
        raise ImproperlyConfigured(
            "The embedded worker needs the django_tasks_db database backend; with "
            "OVMWEB_REDIS_URL run RQ workers (manage.py rqworker --job-class django_tasks_rq.Job)."
        )
    return ClaimingWorker(
        claim=claim or getattr(settings, "OVMWEB_WORKER_CLAIM", DEFAULT_CLAIM),
        queue_names=[run_job_task.queue_name],
        interval=interval,
        batch=batch,
        backend_name=run_job_task.backend,
        startup_delay=False,
        max_tasks=max_tasks,
        worker_id=worker_id or f"ovmweb-{get_random_string(12)}",
        excluded_queue_names=[],
    )


class ClaimingWorker(Worker):
    """django-tasks-db's worker loop, except that one transaction claims up to ``claim``
    ready tasks (in queue order), which then run one after the other. Claiming costs
    four statements however many tasks it takes; one per task was a fifth of a short
    job's cost. A task claimed but not run when the loop ends goes back to READY (here
    on a clean stop, by recovery after a crash), so no queued job is lost either way."""

    def __init__(self, *, claim: int, **kwargs):
        super().__init__(**kwargs)
        self.claim = max(1, claim)

    def _ready(self):
        tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
        if not self.process_all_queues:
            tasks = tasks.filter(queue_name__in=self.queue_names)
        if self.excluded_queue_names:
            tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
        return tasks

    def _claim(self) -> list | None:
        """Claimed tasks; None when the database was locked (try again)."""
        tasks = self._ready()
        limit = self.claim if self.max_tasks is None else max(1, min(self.claim, self.max_tasks - self._run_tasks))
        with exclusive_transaction(tasks.db):
            try:
                claimed = list(tasks.select_for_update(skip_locked=True)[:limit])
                now = timezone.now()
                fresh = [t for t in claimed if not t.worker_ids]
                if fresh:
                    DBTaskResult.objects.filter(pk__in=[t.pk for t in fresh]).update(
                        status="RUNNING", started_at=now, worker_ids=[self.worker_id]
                    )
                    for t in fresh:
                        t.status, t.started_at, t.worker_ids = "RUNNING", now, [self.worker_id]
                for t in claimed:
                    if t not in fresh:
                        t.claim(self.worker_id)  # a retried task keeps its earlier workers' ids
            except OperationalError as exc:
                if is_locked_database_exception(exc):
                    return None
                raise
        return claimed

    def _unclaim(self, tasks: list) -> None:
        if tasks:
            DBTaskResult.objects.filter(pk__in=[t.pk for t in tasks], status="RUNNING").update(
                status="READY", started_at=None
            )

    def run(self) -> None:
        logger.info("Starting worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names))
        waiting: list = []
        try:
            while self.running:
                # Check for dropped/expired connections right after waking up.
                close_old_connections()
                claimed = self._claim()
                waiting = list(claimed or [])
                while waiting and self.running:
                    self.run_task(waiting.pop(0))
                self._unclaim(waiting)
                waiting = []
                if self.batch and claimed == []:
                    return
                if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                    return
                close_old_connections()
                if self.running and not claimed:
                    time.sleep(self.interval)
        finally:
            # A stop by signal (SystemExit from the library's handler) between tasks.
            self._unclaim(waiting)


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
