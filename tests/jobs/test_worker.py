"""Jobs through django-tasks' database backend and its real worker loop."""

import time

import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.models import Event, Job, ObjectLock
from ovmweb.jobs.services import job_request_abort, job_submit
from ovmweb.jobs.worker import EmbeddedWorker

from .conftest import step_gate, step_reached

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_done(job: Job, timeout: float = 30) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job.refresh_from_db()
        if job.status in JobStatus.DONE:
            return job
        time.sleep(0.05)
    raise AssertionError(f"job #{job.pk} still {job.status} after {timeout}s")


@pytest.fixture
def worker():
    w = EmbeddedWorker(interval=0.05, recover=False)
    yield w
    step_gate.set()
    w.stop()


def test_queued_job_survives_until_a_worker_runs_it(vm, worker):
    with transaction.atomic():
        job = job_submit(operation="test.noop", summary="durable", target=vm, lock=[vm], params={"n": 1})
    # Nothing runs it yet: the task waits in the database.
    task = DBTaskResult.objects.get(pk=job.task_id)
    assert task.status == "READY"
    worker.start()
    job = _wait_done(job)
    assert job.status == JobStatus.SUCCESS
    assert job.result == {"echo": {"n": 1}}
    assert not ObjectLock.objects.exists()
    # The worker records the task's own outcome right after the job's.
    deadline = time.monotonic() + 10
    while task.status != "SUCCESSFUL" and time.monotonic() < deadline:
        time.sleep(0.05)
        task.refresh_from_db()
    assert task.status == "SUCCESSFUL"
    assert worker.alive
    # A second job is picked up by the same running loop.
    with transaction.atomic():
        second = job_submit(operation="test.noop", summary="second", target=vm, lock=[vm])
    assert _wait_done(second).status == JobStatus.SUCCESS


def test_abort_is_honoured_between_steps(vm, worker, user):
    with transaction.atomic():
        job = job_submit(
            operation="test.steps", summary="slow", target=vm, lock=[vm], params={"count": 3, "wait": True}
        )
    worker.start()
    assert step_reached.wait(30), "the job never reached its first step"
    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING
    assert ObjectLock.objects.filter(job=job).exists()
    job_request_abort(job=job, user=user)
    step_gate.set()
    job = _wait_done(job)
    assert job.status == JobStatus.ABORTED
    assert job.progress < 100
    assert "step 1 of 3" in job.log and "step 2 of 3" not in job.log
    assert not ObjectLock.objects.exists()
    assert Event.objects.filter(job=job, severity=Severity.WARNING, type="job.aborted").exists()


def test_failure_through_the_worker(vm, worker):
    with transaction.atomic():
        job = job_submit(operation="test.fail", summary="doomed", target=vm, lock=[vm], params={"message": "no disk"})
    worker.start()
    job = _wait_done(job)
    assert job.status == JobStatus.FAILURE and job.error == "no disk"
    assert not ObjectLock.objects.exists()
    assert Event.objects.filter(job=job, severity=Severity.ERROR).get().object_id == vm.pk
    # The task itself succeeded: a failing operation is not a crashing worker.
    worker.stop()
    assert DBTaskResult.objects.get(pk=job.task_id).status == "SUCCESSFUL"
