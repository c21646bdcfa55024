"""The vm.* job operations, run through the real job runner against libvirt's
in-process test:///default driver via driver_for()."""

import pytest

from ovmweb.hypervisor.base import PowerState
from ovmweb.hypervisor.connections import driver_for
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.services.vms import vm_action, vm_update
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Event
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f

pytestmark = pytest.mark.usefixtures("libvirt_test_driver")


@pytest.fixture
def running_setup(db, pool, repo, server, user):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, os_type="OL6", memory_mib=256, max_memory_mib=1024)
    f.VmDiskSlotFactory(vm=vm, slot=0, bus="sata")
    f.VnicFactory(vm=vm, model="e1000")
    return vm


def _state(server, vm):
    from ovmweb.errors import DomainNotFound

    try:
        return driver_for(server).domain_info(str(vm.uuid)).state
    except DomainNotFound:
        return PowerState.ABSENT


def test_start_defines_and_runs_and_allocates_ports(running_setup, server, user):
    vm = running_setup
    job = vm_action(vm=vm, action="start", user=user)
    assert run_pending_jobs() == 1
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert vm.status == VmStatus.RUNNING
    assert vm.server == server
    assert (vm.vnc_port, vm.serial_port) == (10000, 7900)
    assert _state(server, vm) == PowerState.RUNNING
    xml = driver_for(server).domain_xml(str(vm.uuid))
    assert f"{vm.repository.path}/VirtualDisks/" in xml
    assert "10000" in xml


def test_full_lifecycle(running_setup, server, user):
    vm = running_setup
    for action, expected, power in [
        ("start", VmStatus.RUNNING, PowerState.RUNNING),
        ("suspend", VmStatus.SUSPENDED, PowerState.PAUSED),
        ("resume", VmStatus.RUNNING, PowerState.RUNNING),
        ("restart", VmStatus.RUNNING, PowerState.RUNNING),
        ("stop", VmStatus.STOPPED, PowerState.SHUTOFF),
        ("start", VmStatus.RUNNING, PowerState.RUNNING),
        ("kill", VmStatus.STOPPED, PowerState.SHUTOFF),
    ]:
        job = vm_action(vm=vm, action=action, user=user)
        run_pending_jobs()
        job.refresh_from_db()
        vm.refresh_from_db()
        assert job.status == JobStatus.SUCCESS, (action, job.error)
        assert vm.status == expected, action
        assert _state(server, vm) == power, action
    assert vm.vnc_port is None and vm.serial_port is None  # released when stopped


def test_pending_changes_apply_on_stop_start_not_on_restart(running_setup, user):
    vm = running_setup
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    vm = vm_update(vm=vm, user=user, memory_mib=512, keymap="de")  # OL6 on HVM: no hot memory
    assert vm.pending_changes == {"memory_mib": 512, "keymap": "de"}
    assert vm.memory_mib == 256
    vm_action(vm=vm, action="restart", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.RUNNING and vm.memory_mib == 256 and vm.pending_changes
    vm_action(vm=vm, action="stop", user=user)
    run_pending_jobs()
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.RUNNING
    assert vm.memory_mib == 512 and vm.keymap == "de" and vm.pending_changes == {}
    info = driver_for(vm.server).domain_info(str(vm.uuid))
    assert info.memory_mib == 512


def test_hot_vcpu_change_reaches_the_domain(running_setup, user):
    vm = running_setup
    vm.guest_kernel = "2.6.39-400.211.1.el6uek"
    vm.save()
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    vm = vm_update(vm=vm, user=user, vcpus=3)
    assert vm.vcpus == 3 and vm.pending_changes == {}
    run_pending_jobs()
    assert driver_for(vm.server).domain_info(str(vm.uuid)).vcpus == 3


def test_start_refused_by_placement_ends_stopped_with_event(running_setup, user, server):
    vm = running_setup
    vm.memory_mib = vm.max_memory_mib = 4096
    vm.save()
    server.memory_mib = 1024
    server.save()
    job = vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.FAILURE
    assert "MiB free" in job.error
    assert vm.status == VmStatus.STOPPED
    assert vm.vnc_port is None
    assert Event.objects.filter(object_id=vm.pk, type="vm.start_failed", severity="ERROR").exists()


def test_driver_failure_on_start_ends_stopped(running_setup, user, server):
    vm = running_setup
    # Occupy the domain name with another uuid: define() fails in the hypervisor.
    import uuid

    from ovmweb.hypervisor.base import DomainSpec
    from ovmweb.inventory.operations.vm_domain import domain_name

    driver_for(server).define(
        DomainSpec(
            name=domain_name(vm),
            uuid=str(uuid.uuid4()),
            domain_type="HVM",
            virt_type="qemu",
            vcpus=1,
            max_vcpus=1,
            memory_mib=64,
            max_memory_mib=64,
        )
    )
    job = vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.FAILURE
    assert vm.status == VmStatus.STOPPED and vm.vnc_port is None
    assert Event.objects.filter(object_id=vm.pk, type="vm.start_failed").exists()


def test_kill_while_starting_wins(running_setup, user, server):
    vm = running_setup
    vm_action(vm=vm, action="start", user=user)
    vm_action(vm=vm, action="kill", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED
    assert _state(server, vm) in (PowerState.SHUTOFF, PowerState.ABSENT)


def test_two_vms_on_one_server_get_distinct_ports(running_setup, pool, repo, server, user):
    other = f.VirtualMachineFactory(server_pool=pool, repository=repo, memory_mib=256)
    for v in (running_setup, other):
        vm_action(vm=v, action="start", user=user)
    run_pending_jobs()
    running_setup.refresh_from_db()
    other.refresh_from_db()
    assert {running_setup.vnc_port, other.vnc_port} == {10000, 10001}
    assert {running_setup.serial_port, other.serial_port} == {7900, 7901}


@pytest.fixture
def repo_on_test_driver(tmp_path, pool, repo, server):
    from ovmweb.inventory.services.repositories import define_pools

    repo.path = str(tmp_path / "repo")
    repo.save()
    (tmp_path / "repo").mkdir()
    define_pools(driver_for(server), repo)
    yield repo
    from ovmweb.inventory.services.repositories import undefine_pools

    undefine_pools(driver_for(server), repo)


def test_cold_clone_copies_disks_through_storage(repo_on_test_driver, pool, server, user):
    from ovmweb.inventory.services.repositories import pool_name
    from ovmweb.inventory.services.vm_copies import vm_clone

    repo = repo_on_test_driver
    disk = f.VirtualDiskFactory(repository=repo, volume="base.qcow2", size_bytes=1 << 20)
    driver_for(server).volume_create(pool_name(repo, "disks"), "base.qcow2", 1 << 20)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, domain_type="PVHVM")
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=disk)
    f.VnicFactory(vm=vm)
    job = vm_clone(vm=vm, user=user, name="copy")
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    clone = job.target
    new_disk = clone.disk_slots.get(slot=0).virtual_disk
    assert new_disk != disk and new_disk.repository == repo
    assert clone.vnics.count() == 1 and clone.vnics.get().mac != vm.vnics.get().mac
    assert clone.status == VmStatus.STOPPED


# vm.export (an OVA) is tested in test_export.py.


def test_interrupted_job_rereads_the_real_state(running_setup, user, server):
    from ovmweb.jobs.recovery import recover_interrupted_jobs

    vm = running_setup
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    job = vm_action(vm=vm, action="stop", user=user)  # STOPPING at once
    # The worker "dies" with the job RUNNING; the domain still runs.
    type(job).objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    import ovmweb.inventory.operations  # noqa: F401  (connects the receiver, as the worker's autodiscover does)

    recover_interrupted_jobs()
    vm.refresh_from_db()
    assert vm.status == VmStatus.RUNNING


def test_delete_undefines_and_removes(running_setup, user, server):
    from ovmweb.inventory.models import VirtualMachine
    from ovmweb.inventory.services.vms import vm_delete

    vm = running_setup
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm_action(vm=vm, action="kill", user=user)
    run_pending_jobs()
    job = vm_delete(vm=vm, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert not VirtualMachine.objects.filter(pk=vm.pk).exists()
    assert _state(server, vm) == PowerState.ABSENT


def test_message_job_scrubs_the_hidden_value_whatever_the_outcome(running_setup, user):
    from ovmweb.inventory.models import VmMessage
    from ovmweb.inventory.services.messages import vm_send_messages

    vm = running_setup
    vm_action(vm=vm, action="start", user=user)
    run_pending_jobs()
    vm.refresh_from_db()
    (job,) = vm_send_messages(
        vm=vm, user=user, messages=[{"key": "com.oracle.linux.root-password", "value": "pw", "hidden": True}]
    )
    assert "value_encrypted" in job.params
    run_pending_jobs()
    job.refresh_from_db()
    message = VmMessage.objects.get(job=job)
    # The test driver has no guest agent channel: the delivery fails, and says so.
    assert job.status == JobStatus.FAILURE
    assert message.result == "FAILED" and message.value == "********"
    assert "value_encrypted" not in job.params and "value" not in job.params
