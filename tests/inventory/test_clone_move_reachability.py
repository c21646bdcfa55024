"""A clone or a move writes the VM's files into repositories; the server pool the VM will run
in must see each of them (7.6/7.7), checked when the clone or move is requested."""

import pytest

from ovmweb.errors import Conflict
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services.customizers import customizer_create
from ovmweb.inventory.services.vm_copies import vm_clone, vm_move
from ovmweb.jobs.models import Job
from tests import factories as f


@pytest.fixture
def other_pool(db):
    return f.ServerPoolFactory(name="pool-b")


@pytest.fixture
def vm_with_disk(vm, repo):
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    return vm


def _customizer(vm, user, target):
    return customizer_create(
        vm=vm, user=user, name="to-target", disks=[{"slot": vm.disk_slots.get(slot=0), "target_repository": target}]
    )


def _nothing_queued():
    return not VirtualMachine.objects.filter(name="copy").exists() and not Job.objects.exists()


def test_clone_to_another_pool_refuses_a_customizer_target_that_pool_does_not_see(vm_with_disk, pool, other_pool, user):
    target = f.RepositoryFactory(name="only-a", server_pools=[pool])
    customizer = _customizer(vm_with_disk, user, target)
    with pytest.raises(Conflict, match="Repository only-a is not seen by server pool pool-b"):
        vm_clone(vm=vm_with_disk, user=user, name="copy", customizer=customizer, server_pool=other_pool)
    assert _nothing_queued()


def test_clone_to_another_pool_with_targets_it_sees(vm_with_disk, repo, pool, other_pool, user):
    target = f.RepositoryFactory(server_pools=[pool, other_pool])
    repo.server_pools.add(other_pool)  # the configuration stays in the source's repository
    customizer = _customizer(vm_with_disk, user, target)
    job = vm_clone(vm=vm_with_disk, user=user, name="copy", customizer=customizer, server_pool=other_pool)
    assert [d["target_repository_id"] for d in job.params["disks"]] == [target.pk]
    assert VirtualMachine.objects.get(name="copy").server_pool == other_pool


def test_clone_to_another_pool_without_customizer_needs_the_source_repositories_seen(
    vm_with_disk, repo, other_pool, user
):
    repo.name = "repo-a"
    repo.save()
    with pytest.raises(Conflict, match="Repository repo-a is not seen by server pool pool-b"):
        vm_clone(vm=vm_with_disk, user=user, name="copy", server_pool=other_pool)
    assert _nothing_queued()
    repo.server_pools.add(other_pool)
    job = vm_clone(vm=vm_with_disk, user=user, name="copy", server_pool=other_pool)
    assert job.operation == "vm.clone"


def test_clone_to_another_pool_needs_the_configuration_repository_seen(pool, other_pool, user):
    shared = f.RepositoryFactory(server_pools=[pool, other_pool])
    config = f.RepositoryFactory(name="config-a", server_pools=[pool])
    vm = f.VirtualMachineFactory(server_pool=pool, repository=config)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=shared))
    with pytest.raises(Conflict, match="Repository config-a is not seen by server pool pool-b"):
        vm_clone(vm=vm, user=user, name="copy", server_pool=other_pool)
    assert _nothing_queued()


@pytest.fixture
def stale_customizer(vm_with_disk, pool, other_pool, user):
    """A customizer made in pool-a targeting a repository only pool-a sees; then the VM went to
    pool-b (as a cold migration leaves it)."""
    customizer = _customizer(vm_with_disk, user, f.RepositoryFactory(name="only-a", server_pools=[pool]))
    vm_with_disk.server_pool = other_pool
    vm_with_disk.save()
    return customizer


def test_clone_with_a_customizer_saved_before_the_vm_changed_pools(vm_with_disk, stale_customizer, user):
    with pytest.raises(Conflict, match="Repository only-a is not seen by server pool pool-b"):
        vm_clone(vm=vm_with_disk, user=user, name="copy", customizer=stale_customizer)
    assert _nothing_queued()


def test_move_rechecks_a_customizer_saved_before_the_vm_changed_pools(vm_with_disk, stale_customizer, pool, user):
    with pytest.raises(Conflict, match="Repository only-a is not seen by server pool pool-b"):
        vm_move(vm=vm_with_disk, user=user, customizer=stale_customizer)
    assert not Job.objects.exists()
    # Back in the pool the customizer was made for, the same move is accepted.
    vm_with_disk.server_pool = pool
    vm_with_disk.save()
    job = vm_move(vm=vm_with_disk, user=user, customizer=stale_customizer)
    assert [d["target_repository_id"] for d in job.params["disks"]] == [
        stale_customizer.disks.get().target_repository_id
    ]
