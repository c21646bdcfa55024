"""Seed 7.8: the state/action table, immediate statuses, and races."""

import pytest

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VM_ACTION_TABLE, VmAction, VmStatus
from ovmweb.inventory.exceptions import InvalidTransition
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services.vm_state import vm_set_status
from ovmweb.inventory.services.vms import vm_action
from ovmweb.jobs.models import Event, Job, ObjectLock
from tests import factories as f

from .conftest import run_concurrently

ACTIONS = [a for a in VmAction if a != VmAction.MIGRATE]


@pytest.mark.django_db
@pytest.mark.parametrize("status", list(VmStatus))
@pytest.mark.parametrize("action", ACTIONS)
def test_action_table(status, action, user):
    vm = f.VirtualMachineFactory(status=status, ha_enabled=True)
    allowed, immediate = VM_ACTION_TABLE[action]
    if status in allowed:
        job = vm_action(vm=vm, action=action, user=user)
        assert job.operation == f"vm.{action.value}"
        assert job.params["vm_id"] == vm.pk
        vm.refresh_from_db()
        assert vm.status == (immediate or status)
        if action == VmAction.KILL:
            assert vm.status == VmStatus.STOPPED and vm.ha_enabled is False
    else:
        with pytest.raises(InvalidTransition) as exc:
            vm_action(vm=vm, action=action, user=user)
        assert status in str(exc.value)  # the message names the current state
        vm.refresh_from_db()
        assert vm.status == status
        assert not Job.objects.exists()


@pytest.mark.django_db
def test_template_never_starts_nor_leaves_template(user):
    vm = f.VirtualMachineFactory(status=VmStatus.TEMPLATE)
    for action in VmAction:
        with pytest.raises(Conflict):
            vm_action(vm=vm, action=action, user=user)
    assert vm_set_status(vm=vm, status=VmStatus.RUNNING) is None
    vm.refresh_from_db()
    assert vm.status == VmStatus.TEMPLATE


@pytest.mark.django_db
def test_start_sets_starting_locks_and_records_event(user):
    vm = f.VirtualMachineFactory()
    job = vm_action(vm=vm, action="start", user=user)
    assert vm.status == VmStatus.STARTING
    assert ObjectLock.objects.filter(job=job, object_id=vm.pk).exists()
    assert Event.objects.filter(object_id=vm.pk, type="vm.state", text__contains="STARTING").exists()


@pytest.mark.django_db
def test_unknown_action_and_params_are_validation_errors(user, vm):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        vm_action(vm=vm, action="explode", user=user)
    with pytest.raises(ValidationError):
        vm_action(vm=vm, action="stop", user=user, force=True)


@pytest.mark.django_db
def test_start_on_inbound_locked_server_refused_unless_ha_failover(user, vm, server):
    server.inbound_migration_lock = True
    server.save()
    with pytest.raises(Conflict, match="inbound migration lock"):
        vm_action(vm=vm, action="start", user=user, server_id=server.pk)
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED
    job = vm_action(vm=vm, action="start", user=user, server_id=server.pk, ha_failover=True)
    assert job.params["server_id"] == server.pk


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "first,second", [("start", "start"), ("stop", "suspend"), ("restart", "stop"), ("resume", "resume")]
)
def test_two_conflicting_requests_exactly_one_wins(first, second):
    user = f.SuperUserFactory()
    status = VmStatus.SUSPENDED if first == "resume" else (VmStatus.STOPPED if first == "start" else VmStatus.RUNNING)
    vm = f.VirtualMachineFactory(status=status)

    def act(action):
        return vm_action(vm=VirtualMachine.objects.get(pk=vm.pk), action=action, user=user)

    results = run_concurrently(act, [(first,), (second,)] * 4)
    wins = [r for r, e in results if e is None]
    losses = [e for r, e in results if e is not None]
    assert len(wins) == 1, results
    assert all(isinstance(e, Conflict) for e in losses), losses
    assert Job.objects.count() == 1


@pytest.mark.django_db
def test_kill_takes_no_lock_so_it_works_while_a_start_job_holds_the_vm(user, vm):
    start = vm_action(vm=vm, action="start", user=user)
    kill = vm_action(vm=vm, action="kill", user=user)
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED
    assert not ObjectLock.objects.filter(job=kill).exists()
    assert ObjectLock.objects.filter(job=start).exists()
