"""The worker claims several ready tasks per transaction; none is lost by a stop or a crash."""

import time

import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.recovery import recover_interrupted_jobs
from ovmweb.jobs.services import job_submit
from ovmweb.jobs.worker import EmbeddedWorker, make_db_worker

from .conftest import step_gate, step_reached

pytestmark = pytest.mark.django_db(transaction=True)


def _submit(n: int, **kwargs) -> list[Job]:
    with transaction.atomic():
        return [job_submit(operation="test.noop", summary=f"noop {i}", params={"i": i}, **kwargs) for i in range(n)]


def _task_statuses(jobs) -> list[str]:
    by_id = {
        str(pk): status
        for pk, status in DBTaskResult.objects.filter(pk__in=[j.task_id for j in jobs]).values_list("pk", "status")
    }
    return [by_id[j.task_id] for j in jobs]


def test_one_claim_takes_several_tasks_in_queue_order_and_unclaim_gives_them_back():
    jobs = _submit(5)
    worker = make_db_worker(interval=0, batch=True, claim=3)
    claimed = worker._claim()
    assert [str(t.pk) for t in claimed] == [j.task_id for j in jobs[:3]]
    assert _task_statuses(jobs) == ["RUNNING"] * 3 + ["READY"] * 2
    worker._unclaim(claimed)
    assert _task_statuses(jobs) == ["READY"] * 5
    worker.run()  # batch mode: runs everything queued, then returns
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.SUCCESS}
    assert _task_statuses(jobs) == ["SUCCESSFUL"] * 5


def test_tasks_claimed_by_a_worker_that_died_run_after_recovery():
    jobs = _submit(4)
    make_db_worker(interval=0, claim=3)._claim()  # ... and the process is killed here
    assert recover_interrupted_jobs() == []
    assert _task_statuses(jobs) == ["READY"] * 4
    make_db_worker(interval=0, batch=True).run()
    assert [j.status for j in Job.objects.filter(pk__in=[j.pk for j in jobs])] == [JobStatus.SUCCESS] * 4


def test_stop_between_claimed_tasks_puts_the_rest_back(vm):
    with transaction.atomic():
        slow = job_submit(
            operation="test.steps", summary="slow", target=vm, lock=[vm], params={"count": 2, "wait": True}
        )
    rest = _submit(2)
    # One thread: the others claimed with the first wait behind it (a pool claims only for idle threads).
    worker = EmbeddedWorker(interval=0.05, recover=False, threads=1)
    worker.start()
    try:
        assert step_reached.wait(30), "the first job never started"
        assert _task_statuses(rest) == ["RUNNING", "RUNNING"]  # claimed with the first
        worker._worker.running = False  # stop() asked while the first job runs ...
        step_gate.set()
    finally:
        worker.stop()
    deadline = time.monotonic() + 10
    while Job.objects.get(pk=slow.pk).status != JobStatus.SUCCESS and time.monotonic() < deadline:
        time.sleep(0.05)
    assert Job.objects.get(pk=slow.pk).status == JobStatus.SUCCESS  # ... which is finished, not cut off
    assert _task_statuses(rest) == ["READY", "READY"]
    assert set(Job.objects.filter(pk__in=[j.pk for j in rest]).values_list("status", flat=True)) == {JobStatus.QUEUED}
