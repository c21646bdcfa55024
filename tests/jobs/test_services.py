import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

from ovmweb.errors import Conflict, LockConflict
from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.models import Event, Job, ObjectLock
from ovmweb.jobs.services import event_acknowledge, event_record, job_request_abort, job_submit
from ovmweb.jobs.testing import run_pending_jobs

pytestmark = pytest.mark.django_db


def _submit(vm, user=None, op="test.noop", **kw):
    with transaction.atomic():
        return job_submit(operation=op, summary=f"{op} on {vm}", user=user, target=vm, lock=[vm], **kw)


def test_submit_creates_queued_job_with_lock_and_task(vm, user):
    job = _submit(vm, user, params={"a": 1})
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert job.target == vm and job.target_name == str(vm)
    assert job.user == user
    lock = ObjectLock.objects.get()
    assert (lock.content_type, lock.object_id, lock.job_id) == (ContentType.objects.get_for_model(vm), vm.pk, job.pk)
    from django_tasks_db.models import DBTaskResult

    task = DBTaskResult.objects.get(pk=job.task_id)
    assert task.args_kwargs["kwargs"] == {"job_id": job.pk}


def test_lock_conflict_names_the_holder(vm):
    holder = _submit(vm)
    with pytest.raises(LockConflict) as info:
        _submit(vm, op="test.steps")
    message = str(info.value)
    assert f"#{holder.pk}" in message
    assert holder.summary in message
    assert info.value.holder_job_id == holder.pk
    # The refused submission left nothing behind.
    assert Job.objects.count() == 1


def test_submission_rolls_back_with_caller(vm):
    with pytest.raises(ZeroDivisionError), transaction.atomic():
        job_submit(operation="test.noop", summary="x", target=vm, lock=[vm])
        _ = 1 / 0
    assert not Job.objects.exists() and not ObjectLock.objects.exists()
    from django_tasks_db.models import DBTaskResult

    assert not DBTaskResult.objects.exists()


def test_success_releases_locks_and_stores_result(vm):
    job = _submit(vm, params={"x": 2})
    assert run_pending_jobs() == 1
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS
    assert job.progress == 100
    assert job.result == {"echo": {"x": 2}}
    assert "noop ran" in job.log
    assert job.started_at and job.finished_at
    assert not ObjectLock.objects.exists()
    # The object is free again.
    _submit(vm)


def test_failure_records_error_event_and_releases_locks(vm, user):
    job = _submit(vm, user, op="test.fail", params={"message": "disk on fire"})
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILURE
    assert job.error == "disk on fire"
    assert job.progress == 30
    assert not ObjectLock.objects.filter(job=job).exists()
    event = Event.objects.get(job=job, severity=Severity.ERROR)
    assert event.obj == vm
    assert "disk on fire" in event.text


def test_unknown_operation_fails_the_job(vm):
    job = _submit(vm, op="no.such.operation")
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.FAILURE
    assert "no.such.operation" in job.error


def test_abort_of_queued_job_is_immediate(vm, user):
    job = _submit(vm, op="test.steps")
    job_request_abort(job=job, user=user)
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED
    assert not ObjectLock.objects.exists()
    assert run_pending_jobs() == 0  # the queued task finds nothing to run
    with pytest.raises(Conflict):
        job_request_abort(job=job, user=user)


def test_progress_is_monotonic(vm):
    from ovmweb.jobs.registry import JobContext

    job = _submit(vm)
    ctx = JobContext(job)
    ctx.progress(60, "sixty")
    ctx.progress(20, "twenty")
    job.refresh_from_db()
    assert job.progress == 60
    assert "sixty" in job.log and "twenty" in job.log
    ctx.progress(150)
    job.refresh_from_db()
    assert job.progress == 100


def test_parent_finishes_after_children(vm):
    parent = _submit(vm, op="test.parent", params={"children": 2})
    from ovmweb.jobs.runner import run_job

    run_job(parent.pk)
    parent.refresh_from_db()
    children = list(parent.children.order_by("pk"))
    assert len(children) == 2
    # Children need no lock of their own on the VM: the parent holds it.
    assert parent.status == JobStatus.RUNNING and parent.waiting_for_children
    assert ObjectLock.objects.filter(job=parent).exists()
    run_job(children[0].pk)
    parent.refresh_from_db()
    assert parent.status == JobStatus.RUNNING
    assert parent.progress == 50
    run_job(children[1].pk)
    parent.refresh_from_db()
    assert parent.status == JobStatus.SUCCESS
    assert parent.result == {"children": 2}
    assert not ObjectLock.objects.exists()


def test_parent_fails_when_a_child_fails(vm):
    parent = _submit(vm, op="test.parent", params={"children": 1, "child_op": "test.fail"})
    run_pending_jobs()
    parent.refresh_from_db()
    child = parent.children.get()
    assert child.status == JobStatus.FAILURE
    assert parent.status == JobStatus.FAILURE
    assert f"#{child.pk}" in parent.error
    assert not ObjectLock.objects.exists()


def test_event_record_and_acknowledge(vm, user):
    with transaction.atomic():
        event = event_record(obj=vm, type="vm.note", text="hello", severity=Severity.WARNING, user=user)
    assert event.object_repr == str(vm) and event.obj == vm
    event_acknowledge(event=event, user=user)
    event.refresh_from_db()
    assert event.acknowledged and event.acknowledged_by == user


def test_aborting_a_waiting_parent_aborts_its_queued_children_and_ends_it(vm, user, django_capture_on_commit_callbacks):
    from ovmweb.jobs.runner import run_job

    parent = _submit(vm, op="test.parent", params={"children": 2})
    run_job(parent.pk)
    parent.refresh_from_db()
    assert parent.waiting_for_children
    with django_capture_on_commit_callbacks(execute=True):
        job_request_abort(job=parent, user=user)
    parent.refresh_from_db()
    assert set(parent.children.values_list("status", flat=True)) == {JobStatus.ABORTED}
    assert parent.status == JobStatus.ABORTED
    assert not ObjectLock.objects.exists()
    assert run_pending_jobs() == 0
