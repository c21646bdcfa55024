"""A worker that died mid-job: the next start fails its jobs and frees their objects."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.models import Event, Job, ObjectLock
from ovmweb.jobs.recovery import INTERRUPTED, recover_interrupted_jobs
from ovmweb.jobs.services import job_submit
from ovmweb.jobs.signals import job_interrupted
from ovmweb.jobs.worker import EmbeddedWorker

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def interrupted(vm):
    """What a killed worker leaves behind: a RUNNING job holding a lock."""
    job = Job.objects.create(
        operation="test.steps",
        summary="half done",
        status=JobStatus.RUNNING,
        progress=40,
        target_type=ContentType.objects.get_for_model(vm),
        target_id=vm.pk,
        target_name=str(vm),
    )
    ObjectLock.objects.create(content_type=ContentType.objects.get_for_model(vm), object_id=vm.pk, job=job)
    return job


@pytest.fixture
def received():
    seen: list[Job] = []

    def receiver(sender, job, **kwargs):
        # Receivers run after the job is final and its locks are gone.
        assert Job.objects.get(pk=job.pk).status == JobStatus.FAILURE
        assert not ObjectLock.objects.filter(job=job).exists()
        seen.append(job)

    job_interrupted.connect(receiver)
    yield seen
    job_interrupted.disconnect(receiver)


def test_running_job_is_failed_unlocked_recorded_and_signalled(vm, interrupted, received):
    recovered = recover_interrupted_jobs()
    assert [j.pk for j in recovered] == [interrupted.pk]
    interrupted.refresh_from_db()
    assert interrupted.status == JobStatus.FAILURE
    assert interrupted.error == INTERRUPTED
    assert interrupted.finished_at is not None
    assert not ObjectLock.objects.exists()
    event = Event.objects.get(job=interrupted)
    assert event.severity == Severity.WARNING and event.object_id == vm.pk
    assert [j.pk for j in received] == [interrupted.pk]
    # The VM can be locked by a new job again.
    with transaction.atomic():
        job_submit(operation="test.noop", summary="after restart", target=vm, lock=[vm])


def test_queued_job_without_task_is_failed_but_queued_with_task_kept(vm, received):
    with transaction.atomic():
        kept = job_submit(operation="test.noop", summary="still queued", target=vm, lock=[vm])
    orphan = Job.objects.create(
        operation="test.noop", summary="lost task", task_id="00000000-0000-0000-0000-000000000000"
    )
    recover_interrupted_jobs()
    orphan.refresh_from_db()
    kept.refresh_from_db()
    assert orphan.status == JobStatus.FAILURE and orphan.error == INTERRUPTED
    assert kept.status == JobStatus.QUEUED
    assert [j.pk for j in received] == [orphan.pk]


def test_embedded_worker_recovers_at_start(vm, interrupted, received):
    worker = EmbeddedWorker(interval=0.05)
    worker.start()
    try:
        interrupted.refresh_from_db()
        assert interrupted.status == JobStatus.FAILURE
        assert [j.pk for j in received] == [interrupted.pk]
    finally:
        worker.stop()
