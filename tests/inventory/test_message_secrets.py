"""Guest messages: keys from a safe character set; hidden and unlogged values never rest in
plain text anywhere in the database, and leave it (encrypted too) however their job ends."""

import io

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

from ovmweb.inventory.choices import MessageResult, VmStatus
from ovmweb.inventory.models import VirtualMachine, VmMessage
from ovmweb.inventory.services.messages import vm_send_messages
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import job_request_abort
from ovmweb.jobs.testing import run_pending_jobs

pytestmark = pytest.mark.django_db


@pytest.fixture
def running_vm(vm):
    VirtualMachine.objects.filter(pk=vm.pk).update(status=VmStatus.RUNNING)
    vm.refresh_from_db()
    return vm


def database_dump() -> str:
    """Every row of every table the project's models (and django-tasks') keep."""
    out = io.StringIO()
    call_command("dumpdata", stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("key", ["../x", "a b", "a\nb", "", "x\n", "-lead", ".hidden", "k=v", "ключ", "a/b"])
def test_unsafe_keys_are_refused(user, running_vm, key):
    with pytest.raises(ValidationError) as exc:
        vm_send_messages(vm=running_vm, user=user, messages=[{"key": "ok", "value": "v"}, {"key": key, "value": "v"}])
    assert set(exc.value.message_dict) == {"messages[1].key"}
    assert not Job.objects.exists() and not VmMessage.objects.exists()


@pytest.mark.parametrize(
    "key", ["com.oracle.linux.root-password", "com.oracle.linux.network.device.0", "A_b-9", "x" * 256]
)
def test_safe_keys_pass(user, running_vm, key):
    assert len(vm_send_messages(vm=running_vm, user=user, messages=[{"key": key, "value": "v"}])) == 1


def _queue_secrets(user, vm):
    hidden, unlogged = "hidden-s3cret-1f2e", "unlogged-s3cret-9a8b"
    jobs = vm_send_messages(
        vm=vm,
        user=user,
        messages=[
            {"key": "com.oracle.linux.root-password", "value": hidden, "hidden": True},
            {"key": "com.oracle.linux.token", "value": unlogged, "log": False},
        ],
    )
    return jobs, (hidden, unlogged)


def test_queued_secrets_are_nowhere_in_the_database(user, running_vm):
    jobs, secrets = _queue_secrets(user, running_vm)
    dump = database_dump()
    assert "django_tasks_database.dbtaskresult" in dump  # the task rows are in the dump too
    for secret in secrets:
        assert secret not in dump
    # ...but the jobs still carry them, encrypted, for the worker.
    assert all("value_encrypted" in job.params for job in jobs)


def test_aborting_a_queued_message_removes_the_encrypted_value(user, running_vm):
    jobs, secrets = _queue_secrets(user, running_vm)
    tokens = [job.params["value_encrypted"] for job in jobs]
    for job in jobs:
        job_request_abort(job=job, user=user)
    dump = database_dump()
    for token in tokens:
        assert token not in dump
    for job in Job.objects.filter(pk__in=[j.pk for j in jobs]):
        assert job.status == JobStatus.ABORTED
        assert "value_encrypted" not in job.params and "value" not in job.params
    # Never sent: not left PENDING.
    assert set(VmMessage.objects.values_list("result", flat=True)) == {MessageResult.FAILED}


def test_a_failed_message_job_leaves_no_value(user, running_vm):
    jobs, secrets = _queue_secrets(user, running_vm)
    tokens = [job.params["value_encrypted"] for job in jobs]
    run_pending_jobs()  # the VM has no server: each job fails
    assert set(Job.objects.values_list("status", flat=True)) == {JobStatus.FAILURE}
    dump = database_dump()
    for text in (*secrets, *tokens):
        assert text not in dump


def test_a_logged_value_is_kept_in_the_message_log(user, running_vm):
    vm_send_messages(vm=running_vm, user=user, messages=[{"key": "com.oracle.linux.network.device.0", "value": "eth0"}])
    assert VmMessage.objects.get().value == "eth0"
