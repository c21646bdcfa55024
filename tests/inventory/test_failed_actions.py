"""A VM action job that fails, is aborted, or never runs leaves the VM in the state its
server really reports (seed 7.8: STOPPING/STARTING are promises, not facts), with an
event. Runs through the real job runner against libvirt's test:///default driver."""

import pytest

from ovmweb.hypervisor.base import PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.operations import vms as vm_operations
from ovmweb.inventory.services.vms import vm_action
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import job_request_abort
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

pytestmark = pytest.mark.usefixtures("libvirt_test_driver")


@pytest.fixture
def running_vm(db, pool, repo, server, user):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, os_type="OL6", memory_mib=256, max_memory_mib=256)
    f.VmDiskSlotFactory(vm=vm, slot=0, bus="sata")
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.RUNNING
    return vm


def power(vm):
    return driver_for(vm.server).domain_info(str(vm.uuid)).state


def run_action(vm, action, user):
    job = vm_action(vm=vm, action=action, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    return job


def test_stop_that_times_out_leaves_the_vm_running(running_vm, user, monkeypatch):
    # The guest ignores the ACPI power button (or is still booting): shutdown is a no-op.
    monkeypatch.setattr(LibvirtDriver, "shutdown", lambda self, uuid: None)
    monkeypatch.setattr(vm_operations, "STOP_TIMEOUT", 0.3)
    job = run_action(running_vm, "stop", user)
    assert job.status == JobStatus.FAILURE and "did not power off" in job.error
    assert running_vm.status == VmStatus.RUNNING
    assert power(running_vm) == PowerState.RUNNING
    assert running_vm.vnc_port is not None  # still running: it keeps its console ports
    event = Event.objects.filter(object_id=running_vm.pk, type="vm.state").order_by("-pk").first()
    assert "running" in event.text and f"job #{job.pk}" in event.text
    # Corrected inside the job: no extra re-read job was needed.
    assert not Job.objects.filter(operation="vm.reread").exists()
    # And the VM can be acted on again.
    monkeypatch.undo()
    assert run_action(running_vm, "stop", user).status == JobStatus.SUCCESS
    assert running_vm.status == VmStatus.STOPPED


@pytest.mark.parametrize("action", ["restart", "suspend", "stop"])
def test_failed_action_on_a_domain_gone_away_ends_stopped(running_vm, user, action):
    driver_for(running_vm.server).destroy(str(running_vm.uuid))  # powered off on the host
    job = run_action(running_vm, action, user)
    # A stop finds the domain already off and succeeds; restart and suspend fail.
    assert job.status == (JobStatus.SUCCESS if action == "stop" else JobStatus.FAILURE)
    assert running_vm.status == VmStatus.STOPPED
    assert running_vm.vnc_port is None and running_vm.serial_port is None


def test_restart_that_fails_in_the_hypervisor_leaves_it_running(running_vm, user, monkeypatch):
    from ovmweb.errors import OperationFailed

    def refuse(self, uuid):
        raise OperationFailed("reboot refused by the hypervisor")

    monkeypatch.setattr(LibvirtDriver, "reboot", refuse)
    job = run_action(running_vm, "restart", user)
    assert job.status == JobStatus.FAILURE and "refused" in job.error
    assert running_vm.status == VmStatus.RUNNING


@pytest.mark.parametrize(
    "action,expected", [("stop", VmStatus.RUNNING), ("restart", VmStatus.RUNNING), ("suspend", VmStatus.RUNNING)]
)
def test_action_aborted_while_queued_is_re_read(running_vm, user, action, expected, django_capture_on_commit_callbacks):
    job = vm_action(vm=running_vm, action=action, user=user)
    running_vm.refresh_from_db()
    assert running_vm.status == VmStatus.STOPPING
    with django_capture_on_commit_callbacks(execute=True):  # the abort's commit queues the re-read
        job_request_abort(job=job, user=user)
    job.refresh_from_db()
    assert job.status == JobStatus.ABORTED
    reread = Job.objects.get(operation="vm.reread")
    assert reread.target_id == running_vm.pk and reread.params["after_job_id"] == job.pk
    run_pending_jobs()
    reread.refresh_from_db()
    running_vm.refresh_from_db()
    assert reread.status == JobStatus.SUCCESS and reread.result["power_state"] == "running"
    assert running_vm.status == expected
    assert Event.objects.filter(
        object_id=running_vm.pk, type="vm.state", text__contains=f"job #{job.pk} did not run"
    ).exists()


def test_start_aborted_while_queued_ends_stopped(db, pool, repo, server, user, django_capture_on_commit_callbacks):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, memory_mib=256, max_memory_mib=256)
    job = vm_action(vm=vm, action="start", user=user)
    with django_capture_on_commit_callbacks(execute=True):
        job_request_abort(job=job, user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED
    assert Job.objects.get(operation="vm.reread").status == JobStatus.SUCCESS


def test_no_reread_when_the_vm_is_not_left_in_a_promised_state(running_vm, user):
    from ovmweb.inventory.services.vm_state import vm_reread_submit

    assert vm_reread_submit(vm_id=running_vm.pk) is None
    assert not Job.objects.filter(operation="vm.reread").exists()
