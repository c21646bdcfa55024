"""Jobs run side by side: a pool of worker threads, and several worker processes."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.db.models import Count
from django_tasks_db.models import DBTaskResult

from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Event, Job, ObjectLock
from ovmweb.jobs.registry import JobContext, JobDeferred, operation
from ovmweb.jobs.services import job_submit
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.jobs.worker import EmbeddedWorker, PoolWorker, make_db_worker

from .conftest import step_gate, step_reached

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _wait(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def _done(jobs) -> bool:
    return not Job.objects.filter(pk__in=[j.pk for j in jobs], status__in=JobStatus.LIVE).exists()


@pytest.fixture
def pool():
    w = EmbeddedWorker(interval=0.02, recover=False, threads=4)
    yield w
    step_gate.set()
    w.stop()


def test_threads_setting_makes_a_pool():
    assert isinstance(make_db_worker(interval=0, threads=3), PoolWorker)
    assert not isinstance(make_db_worker(interval=0, threads=1), PoolWorker)


def test_a_slow_job_on_one_vm_does_not_hold_back_a_job_on_another(pool):
    from tests.factories import VirtualMachineFactory

    vm_a, vm_b = VirtualMachineFactory(), VirtualMachineFactory()
    with transaction.atomic():
        slow = job_submit(operation="test.steps", summary="slow stop", target=vm_a, lock=[vm_a], params={"wait": True})
        quick = job_submit(operation="test.noop", summary="start", target=vm_b, lock=[vm_b])
    pool.start()
    assert step_reached.wait(30), "the slow job never started"
    _wait(lambda: _done([quick]))
    # The quick job, queued after the slow one, ended while the slow one still runs.
    assert Job.objects.get(pk=quick.pk).status == JobStatus.SUCCESS
    assert Job.objects.get(pk=slow.pk).status == JobStatus.RUNNING
    step_gate.set()
    _wait(lambda: _done([slow]))
    assert Job.objects.get(pk=slow.pk).status == JobStatus.SUCCESS


def test_concurrent_writers_on_one_database_never_fail(pool, vm):
    # Every job writes several times (progress, log lines, its end); four threads write at
    # once, and this thread submits meanwhile. SQLite: IMMEDIATE transactions + busy timeout.
    pool.start()
    jobs = []
    for i in range(60):
        with transaction.atomic():
            jobs.append(job_submit(operation="test.steps", summary=f"writer {i}", params={"count": 4}))
    _wait(lambda: _done(jobs), timeout=120)
    statuses = Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("status", "error")
    assert {s for s, _e in statuses} == {JobStatus.SUCCESS}, [e for s, e in statuses if s != JobStatus.SUCCESS][:3]
    _wait(lambda: not DBTaskResult.objects.filter(status__in=["READY", "RUNNING"]).exists())
    assert not DBTaskResult.objects.exclude(status="SUCCESSFUL").exists()
    # More than one job ran at a time.
    assert len({w for t in DBTaskResult.objects.all() for w in t.worker_ids}) == 1
    runs = sorted(Job.objects.filter(pk__in=[j.pk for j in jobs]).values_list("started_at", "finished_at"))
    assert any(runs[i + 1][0] < runs[i][1] for i in range(len(runs) - 1))


def _database_env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="ovmweb.settings.base", OVMWEB_VAR_DIR=str(tmp_path), OVMWEB_MONITOR="0")
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env["OVMWEB_SQLITE_PATH"] = db["NAME"]
    else:
        env["OVMWEB_DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    return env


def test_two_worker_processes_run_each_job_exactly_once(tmp_path):
    with transaction.atomic():
        jobs = [job_submit(operation="test.count", summary=f"count {i}") for i in range(200)]
    env = _database_env(tmp_path)
    procs = [
        subprocess.Popen(
            [sys.executable, "tests/jobs/worker_process.py", "3"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCESS}
    runs = dict(
        Event.objects.filter(type="test.count").values_list("job").annotate(n=Count("pk")).values_list("job", "n")
    )
    assert runs == {j.pk: 1 for j in jobs}
    assert DBTaskResult.objects.filter(status="SUCCESSFUL").count() == 200


waiter_gate = threading.Event()


@operation("test.waiter")
def waiter(ctx: JobContext) -> dict:
    """Waits for waiter_gate like an export waits for a slot, giving its thread back when needed."""
    ctx.log("waiting")
    while not waiter_gate.is_set():
        ctx.defer_if_needed(0.1)
        time.sleep(0.02)
    return {}


def test_a_waiting_job_gives_its_thread_back_when_the_pool_is_full(vm):
    from tests.factories import VirtualMachineFactory

    waiter_gate.clear()
    worker = EmbeddedWorker(interval=0.02, recover=False, threads=2)
    vm_b, vm_c = VirtualMachineFactory(), VirtualMachineFactory()
    with transaction.atomic():
        slow = job_submit(operation="test.steps", summary="slow", target=vm, lock=[vm], params={"wait": True})
        waiting = job_submit(operation="test.waiter", summary="waits its turn", target=vm_b, lock=[vm_b])
    worker.start()
    try:
        assert step_reached.wait(30), "the slow job never started"
        _wait(lambda: "waiting" in Job.objects.get(pk=waiting.pk).log)
        # Both threads are taken (one works, one waits): a new job must still run.
        with transaction.atomic():
            quick = job_submit(operation="test.noop", summary="start", target=vm_c, lock=[vm_c])
        _wait(lambda: _done([quick]))
        assert Job.objects.get(pk=quick.pk).status == JobStatus.SUCCESS
        assert Job.objects.get(pk=slow.pk).status == JobStatus.RUNNING
        # The waiter went back to the queue with its lock, and waits again on a free thread.
        assert Job.objects.get(pk=waiting.pk).status in JobStatus.LIVE
        assert ObjectLock.objects.filter(job=waiting).exists()
        _wait(lambda: Job.objects.get(pk=waiting.pk).log.count("waiting") >= 2)
        waiter_gate.set()
        step_gate.set()
        _wait(lambda: _done([slow, waiting]))
        assert Job.objects.get(pk=waiting.pk).status == JobStatus.SUCCESS
        assert not ObjectLock.objects.exists()
    finally:
        waiter_gate.set()
        step_gate.set()
        worker.stop()


def test_outside_a_pool_a_waiting_job_keeps_its_thread(vm):
    waiter_gate.set()
    with transaction.atomic():
        job = job_submit(operation="test.waiter", summary="waits", target=vm, lock=[vm])
    assert run_pending_jobs() == 1
    assert Job.objects.get(pk=job.pk).status == JobStatus.SUCCESS


def test_a_fifth_export_re_queued_while_waiting_does_not_repeat_its_log_line():
    from ovmweb.inventory.services import exports

    holders = [job_submit(operation="vm.export", summary=f"export {i}") for i in range(4)]
    assert all(exports.export_slot_acquire(job=h) for h in holders)
    fifth = job_submit(operation="vm.export", summary="fifth")
    ctx = JobContext(fifth)

    def defer(delay: float) -> None:
        raise JobDeferred(delay)

    for _run in range(2):  # the first run and the one after its deferral
        with pytest.raises(JobDeferred):
            exports.export_wait_for_slot(job=fifth, progress=ctx.progress, check_abort=ctx.check_abort, defer=defer)
    assert fifth.log.count("queued: 4 exports running") == 1


@operation("test.hold")
def hold(ctx: JobContext) -> dict:
    """Runs until waiter_gate is set (a long job that does not give its thread back)."""
    ctx.log("holding")
    waiter_gate.wait(60)
    return {}


def test_a_long_job_leaves_its_place_to_a_new_one(vm, monkeypatch):
    from tests.factories import VirtualMachineFactory

    waiter_gate.clear()
    monkeypatch.setattr(PoolWorker, "LONG_AFTER", 0.2)
    worker = EmbeddedWorker(interval=0.02, recover=False, threads=2)
    vm_b, vm_c = VirtualMachineFactory(), VirtualMachineFactory()
    with transaction.atomic():
        long_jobs = [job_submit(operation="test.hold", summary=f"long {o.pk}", target=o, lock=[o]) for o in (vm, vm_b)]
        quick = job_submit(operation="test.noop", summary="quick", target=vm_c, lock=[vm_c])
    worker.start()
    try:
        # Two threads, and the long jobs hold both: the quick one runs on a spare runner.
        _wait(lambda: _done([quick]))
        assert set(Job.objects.filter(pk__in=[j.pk for j in long_jobs]).values_list("status", flat=True)) == {
            JobStatus.RUNNING
        }
        assert Job.objects.get(pk=quick.pk).status == JobStatus.SUCCESS
    finally:
        waiter_gate.set()
        worker.stop()
    assert _done(long_jobs)


def test_long_jobs_free_places_up_to_twice_the_threads():
    worker = make_db_worker(interval=0, threads=2)
    now = time.monotonic()
    old, fresh = now - worker.LONG_AFTER - 1, now
    cases = [
        ({}, 0, 2),  # idle: two places
        ({1: fresh, 2: fresh}, 2, 0),  # two short jobs: full
        ({1: old, 2: fresh}, 2, 1),  # one of them is long: one more
        ({1: old, 2: old}, 2, 2),
        ({1: old, 2: old, 3: old, 4: old}, 4, 0),  # never more than twice the threads
    ]
    for started, busy, free in cases:
        worker._started, worker._busy = started, busy
        assert worker._free() == free, (started, busy)
