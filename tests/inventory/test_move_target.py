"""vm_move with a target repository instead of a clone customizer (7.7)."""

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.services.vm_copies import vm_move
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f


def test_target_repository_moves_every_disk_and_the_configuration(vm, pool, user):
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=vm.repository))
    f.VmDiskSlotFactory(vm=vm, slot=1, kind="CDROM", virtual_disk=None, iso=f.IsoFileFactory(repository=vm.repository))
    target = f.RepositoryFactory(server_pools=[pool])
    job = vm_move(vm=vm, user=user, target_repository=target)
    assert job.params["repository_id"] == target.pk
    assert [(d["target_repository_id"], d["clone_type"]) for d in job.params["disks"]] == [(target.pk, "SPARSE")]


def test_vm_without_disks_moves_its_configuration(vm, pool, user):
    target = f.RepositoryFactory(server_pools=[pool])
    job = vm_move(vm=vm, user=user, target_repository=target)
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert vm.repository == target


def test_move_needs_exactly_one_of_customizer_or_repository_and_a_stopped_vm(vm, pool, user):
    with pytest.raises(ValidationError):
        vm_move(vm=vm, user=user)
    with pytest.raises(ValidationError) as exc:
        vm_move(vm=vm, user=user, target_repository=f.RepositoryFactory())  # not seen by the pool
    assert "target_repository" in exc.value.message_dict
    vm.status = VmStatus.RUNNING
    vm.save()
    with pytest.raises(Conflict, match="stop it first"):
        vm_move(vm=vm, user=user, target_repository=f.RepositoryFactory(server_pools=[pool]))
