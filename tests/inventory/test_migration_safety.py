"""A live migration with storage checks space first (seed 7.7), refuses a disk thin clones
stand on, and settles a failure by where libvirt says the guest is (no real servers here:
the drivers are stand-ins; tests/migration/test_storage_migration.py runs it for real)."""

from types import SimpleNamespace

import pytest

from ovmweb.errors import Conflict, ConnectionFailed, DomainNotFound
from ovmweb.hypervisor.base import PowerState
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.operations.vm_migration import SOURCE, TARGET, UNKNOWN, locate
from ovmweb.inventory.services import storage, vm_migration
from tests import factories as f


class Driver:
    def __init__(self, *, free=0, allocation=0, state=PowerState.ABSENT, down=False):
        self.free, self.allocation, self.state, self.down = free, allocation, state, down

    def pool_refresh(self, name):
        return SimpleNamespace(available_bytes=self.free)

    def volume_info(self, pool, name):
        return SimpleNamespace(allocation_bytes=self.allocation)

    def domain_info(self, uuid):
        if self.down:
            raise ConnectionFailed("ssh dropped")
        if self.state == PowerState.ABSENT:
            raise DomainNotFound(uuid)
        return SimpleNamespace(state=self.state)


@pytest.fixture
def setup(pool, monkeypatch):
    a, b = f.ServerFactory(server_pool=pool), f.ServerFactory(server_pool=pool)
    repo_a = f.RepositoryFactory(kind="LOCAL", server=a, path="/srv/a")
    repo_b = f.RepositoryFactory(kind="LOCAL", server=b, path="/srv/b")
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo_a, server=a, status=VmStatus.RUNNING)
    disk = f.VirtualDiskFactory(repository=repo_a)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=disk)
    drivers = {repo_a.pk: Driver(free=10 << 30, allocation=1 << 30), repo_b.pk: Driver(free=10 << 30)}
    monkeypatch.setattr(storage, "repository_driver", lambda repo: drivers[repo.pk])
    return SimpleNamespace(vm=vm, disk=disk, repo_a=repo_a, repo_b=repo_b, drivers=drivers)


def test_space_is_checked_on_both_sides(setup):
    s = setup
    disks = vm_migration.storage_disks(s.vm)
    assert vm_migration.check_storage_space(vm=s.vm, disks=disks, target_repository=s.repo_b) == 1 << 30
    s.drivers[s.repo_b.pk].free = (1 << 30) - 1
    with pytest.raises(Conflict, match="is full"):
        vm_migration.check_storage_space(vm=s.vm, disks=disks, target_repository=s.repo_b)
    s.drivers[s.repo_b.pk].free = 10 << 30
    # The source keeps as much free again as the disks use (seed 7.7: "at least double").
    s.drivers[s.repo_a.pk].free = (1 << 30) - 1
    with pytest.raises(Conflict, match="source repository"):
        vm_migration.check_storage_space(vm=s.vm, disks=disks, target_repository=s.repo_b)


def test_a_disk_thin_clones_stand_on_does_not_migrate(setup, user):
    f.VirtualDiskFactory(repository=setup.repo_a, backing_disk=setup.disk)
    with pytest.raises(Conflict, match="Thin clones stand on"):
        vm_migration.vm_migrate(vm=setup.vm, user=user, target_server=setup.repo_b.server)


@pytest.mark.parametrize(
    ("source", "target", "where"),
    [
        (Driver(state=PowerState.RUNNING), Driver(), SOURCE),
        (Driver(state=PowerState.RUNNING), Driver(state=PowerState.SHUTOFF), SOURCE),  # a leftover definition
        (Driver(), Driver(state=PowerState.RUNNING), TARGET),  # only the confirmation failed
        (Driver(state=PowerState.RUNNING), Driver(down=True), UNKNOWN),  # never guess: nothing deleted
        (Driver(down=True), Driver(state=PowerState.RUNNING), UNKNOWN),
        (Driver(), Driver(), UNKNOWN),
    ],
)
def test_locate_asks_both_servers(source, target, where):
    assert locate(SimpleNamespace(uuid="u"), source, target) == where
