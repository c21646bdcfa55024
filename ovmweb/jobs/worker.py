"""The task worker that runs inside the `runovmweb` process (embedded default).

It is django-tasks-db's worker loop (`manage.py db_worker`'s Worker, claiming
several ready tasks per transaction) on a thread, so queued and interrupted
work behaves exactly as with a separate worker process. Jobs run side by side
on a pool of ``OVMWEB_WORKER_THREADS`` threads (one claimer, N runners): a slow
job (a guest taking minutes to shut down) holds one thread, never the queue.
What must not run at the same time is kept apart by the jobs' ObjectLocks, not
by the worker.
"""

from __future__ import annotations

import logging
import queue
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
# The PoolWorker whose runner this thread is (unset elsewhere).
_runner = threading.local()


# Ready tasks one worker claims per transaction (setting OVMWEB_WORKER_CLAIM).
DEFAULT_CLAIM = 8
# Jobs one worker runs at once (setting OVMWEB_WORKER_THREADS).
DEFAULT_THREADS = 4


def make_db_worker(
    *,
    interval: float,
    worker_id: str | None = None,
    batch: bool = False,
    max_tasks: int | None = None,
    claim: int | None = None,
    threads: int | None = None,
):
    """A worker for the queue of the job task: django-tasks-db's, claiming several tasks at a time
    and running up to ``threads`` of them at once (1: one after the other, on the calling thread)."""
    backend = task_backends[run_job_task.backend]
    if not isinstance(backend, DatabaseBackend):
        raise ImproperlyConfigured(
            "The embedded worker needs the django_tasks_db database backend; with "
            "OVMWEB_REDIS_URL run RQ workers (manage.py rqworker --job-class django_tasks_rq.Job)."
        )
    threads = threads or getattr(settings, "OVMWEB_WORKER_THREADS", DEFAULT_THREADS)
    cls, extra = (PoolWorker, {"threads": threads}) if threads > 1 else (ClaimingWorker, {})
    return cls(
        **extra,
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

    def _claim(self, limit: int | None = None) -> list | None:
        """Claimed tasks (at most ``limit``); None when the database was locked (try again)."""
        tasks = self._ready()
        limit = min(self.claim, limit or self.claim)
        if self.max_tasks is not None:
            limit = max(1, min(limit, self.max_tasks - self._taken()))
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

    def _taken(self) -> int:
        """Tasks this worker has taken on so far (for max_tasks)."""
        return self._run_tasks

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


class PoolWorker(ClaimingWorker):
    """ClaimingWorker's claims, run on runner threads (twice ``threads``, see below), each
    with its own database connection (closed when the thread ends).

    The claimer (the thread that calls run()) claims only as many tasks as runners
    are idle, so a claimed task never waits behind another one: a task waiting for a
    thread is still READY in the queue, where another worker process may take it.
    Which jobs may overlap is the ObjectLocks' business (taken at submission), so two
    jobs on one object never run at once whatever the number of threads.

    ``threads`` jobs run at once, not counting long ones: a job running for more than
    LONG_AFTER seconds (an export, a guest slow to shut down) leaves its place to a new
    job, on one of ``threads`` more runners. So four exports do not stop every VM start,
    and the threads (and database connections) stay bounded at twice ``threads``.
    """

    # Seconds the claimer waits for a runner to become idle before looking at `running` again.
    IDLE_WAIT = 0.2
    # Seconds after which a running job no longer counts against ``threads``.
    LONG_AFTER = 10.0

    def __init__(self, *, threads: int, **kwargs):
        super().__init__(**kwargs)
        self.threads = max(1, threads)
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._busy = 0
        # Runner thread id -> when its current job started (monotonic).
        self._started: dict[int, float] = {}
        self._claimed_total = 0
        self._runners: list[threading.Thread] = []

    def _taken(self) -> int:
        return self._claimed_total

    def shutdown(self, signum, frame) -> None:
        # The library's handler exits at once when its one task flag is down; with a
        # pool that flag says nothing. First signal: stop claiming, let the runners
        # finish their jobs; a second one exits at once (the library's behaviour).
        if self.running:
            logger.warning("Received signal %s - finishing the running jobs (again to force)", signum)
            self.running = False
            return
        super().shutdown(signum, frame)

    def run(self) -> None:
        connection_created.connect(_keep_worker_connection, dispatch_uid="ovmweb-worker-connection")
        logger.info("Starting worker worker_id=%s threads=%d", self.worker_id, self.threads)
        self._runners = [
            threading.Thread(target=self._serve, name=f"{WORKER_THREAD_PREFIX}-run-{i + 1}", daemon=True)
            for i in range(2 * self.threads)
        ]
        for runner in self._runners:
            runner.start()
        try:
            while self.running:
                idle = self._wait_idle()
                if not idle:
                    continue
                close_old_connections()
                claimed = self._claim(idle)
                for task in claimed or []:
                    self._dispatch(task)
                if self._finished(claimed):
                    return
                if self.running and not claimed:
                    time.sleep(self.interval)
        finally:
            self._drain()
            connections.close_all()

    def _wait_idle(self) -> int:
        """Jobs that may start now (0 when stopping, or when none could in IDLE_WAIT)."""
        with self._idle:
            self._idle.wait_for(lambda: self._free() > 0 or not self.running, timeout=self.IDLE_WAIT)
            return self._free() if self.running else 0

    def _free(self) -> int:
        """Jobs that may start now (call holding ``_idle``): ``threads``, plus one per long job
        (up to ``threads`` more), minus the jobs claimed and not ended."""
        since = time.monotonic() - self.LONG_AFTER
        long = sum(1 for started in self._started.values() if started <= since)
        return max(0, min(2 * self.threads, self.threads + long) - self._busy)

    def _dispatch(self, task) -> None:
        with self._idle:
            self._busy += 1
            self._claimed_total += 1
        self._tasks.put(task)

    def _finished(self, claimed: list | None) -> bool:
        if self.max_tasks is not None and self._claimed_total >= self.max_tasks:
            return True
        if self.batch and claimed == []:
            with self._idle:
                # A running job may still submit children: batch ends once all is quiet.
                return self._busy == 0
        return False

    def needs_thread(self) -> bool:
        """Whether a job waiting on one of our runners should give its thread back:
        we are stopping, or every runner is busy while tasks are ready."""
        if not self.running:
            return True
        with self._idle:
            full = self._free() == 0
        return full and self._ready().exists()

    def _serve(self) -> None:
        _runner.pool = self
        try:
            while True:
                task = self._tasks.get()
                if task is None:
                    return
                with self._idle:
                    self._started[threading.get_ident()] = time.monotonic()
                try:
                    close_old_connections()
                    self.run_task(task)
                except Exception:  # the task's own failure is recorded by run_task; this is the worker's
                    logger.exception("job worker thread failed on task %s", task.pk)
                finally:
                    close_old_connections()
                    with self._idle:
                        self._busy -= 1
                        self._started.pop(threading.get_ident(), None)
                        self._idle.notify_all()
        finally:
            connections.close_all()

    def _drain(self) -> None:
        """Give back the tasks claimed but not started, then wait for the running ones to end."""
        leftover = []
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not None:
                leftover.append(task)
        self._unclaim(leftover)
        for _runner in self._runners:
            self._tasks.put(None)
        for runner in self._runners:
            runner.join()


def thread_is_needed() -> bool:
    """For a job that waits (JobContext.defer_if_needed): True when its worker thread
    should be handed back. Outside a pool (one-thread loop, tests, RQ) waiting blocks
    no other job of this thread's worker, so it is always False."""
    pool = getattr(_runner, "pool", None)
    return pool is not None and pool.needs_thread()


def _keep_worker_connection(sender, connection, **kwargs) -> None:
    # The worker loop calls close_old_connections() around every task, which
    # with CONN_MAX_AGE=0 (the SQLite default) reconnects for every job. A
    # worker thread is long-lived: keep its connection (it is still closed and
    # reopened after an error, by close_old_connections' usability check).
    if threading.current_thread().name.startswith(WORKER_THREAD_PREFIX):
        connection.close_at = None


class EmbeddedWorker:
    """start(): recover interrupted jobs, then poll the queue on a thread (running up to ``threads``
    jobs at once); stop(): finish the running jobs and end."""

    def __init__(self, *, interval: float | None = None, recover: bool = True, threads: int | None = None):
        self.interval = settings.OVMWEB_WORKER_INTERVAL if interval is None else interval
        self.threads = threads or getattr(settings, "OVMWEB_WORKER_THREADS", DEFAULT_THREADS)
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
        self._worker = make_db_worker(interval=self.interval, threads=self.threads)
        self._thread = threading.Thread(target=self._run, name=f"{WORKER_THREAD_PREFIX}-1", daemon=True)
        self._thread.start()
        logger.info("embedded job worker started (%d threads, poll interval %.2fs)", self.threads, self.interval)

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
