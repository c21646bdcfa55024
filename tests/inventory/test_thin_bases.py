"""Thin clones stand on read-only bases, never on a disk a VM writes to; a base goes only
with its last child; chains are bounded; deleting a VM deletes the disks nothing else
uses. libvirt's test:///default driver with directory pools in tmp_path."""

import pytest

from ovmweb.errors import Conflict
from ovmweb.hypervisor.connections import driver_for
from ovmweb.inventory import rules
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualDisk
from ovmweb.inventory.services import disk_copies, storage
from ovmweb.inventory.services.repositories import define_pools, pool_name, undefine_pools
from ovmweb.inventory.services.vms import vm_delete
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f


@pytest.fixture
def repo(libvirt_test_driver, tmp_path, pool, server):
    (tmp_path / "repo").mkdir()
    made = f.RepositoryFactory(server_pools=[pool], path=str(tmp_path / "repo"))
    define_pools(driver_for(server), made)
    yield made
    undefine_pools(driver_for(server), made)


@pytest.fixture
def vm(repo, pool, server):
    disk = f.VirtualDiskFactory(repository=repo, volume="src.qcow2", size_bytes=1 << 20)
    driver_for(server).volume_create(pool_name(repo, "disks"), "src.qcow2", 1 << 20)
    made = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="src", status=VmStatus.STOPPED)
    f.VmDiskSlotFactory(vm=made, slot=0, virtual_disk=disk)
    return made


def _volumes(server, repo) -> set[str]:
    return {v.name for v in driver_for(server).pool_refresh(pool_name(repo, "disks")).volumes}


def _thin(disk, repo, name="clone"):
    return storage.disk_clone(disk=disk, target_repository=repo, clone_type="THIN", name=name)


def test_thin_clone_freezes_the_source_as_a_base_under_two_overlays(vm, repo, server):
    disk = vm.disk_slots.get(slot=0).virtual_disk
    clone = _thin(disk, repo)
    disk.refresh_from_db()
    base = clone.backing_disk
    assert base.thin_base and base.volume == "src.qcow2" and not base.slots.exists()
    assert disk.backing_disk == base and disk.volume != "src.qcow2" and disk.format == "qcow2"
    assert vm.disk_slots.get(slot=0).virtual_disk == disk  # the VM keeps its disk record
    assert {"src.qcow2", disk.volume, clone.volume} <= _volumes(server, repo)


def test_a_disk_a_running_vm_uses_is_not_cloned_thin(vm, repo):
    vm.status = VmStatus.RUNNING
    vm.save()
    with pytest.raises(Conflict, match="not stopped"):
        _thin(vm.disk_slots.get(slot=0).virtual_disk, repo)


def test_chain_depth_is_bounded(vm, repo, settings):
    settings.OVMWEB_THIN_CHAIN_MAX = 2
    disk = vm.disk_slots.get(slot=0).virtual_disk
    _thin(disk, repo, "c1")
    _thin(disk, repo, "c2")
    assert disk_copies.chain_depth(disk) == 2
    with pytest.raises(Conflict, match="flatten"):
        _thin(disk, repo, "c3")


def test_a_base_is_deleted_only_with_its_last_child(vm, repo, server, user):
    disk = vm.disk_slots.get(slot=0).virtual_disk
    clone = _thin(disk, repo)
    base = clone.backing_disk
    with pytest.raises(Conflict, match="thin clones"):
        storage.disk_delete(disk=base, user=user)
    storage.disk_delete(disk=clone, user=user)
    run_pending_jobs()
    assert VirtualDisk.objects.filter(pk=base.pk).exists()  # the source still stands on it
    job = vm_delete(vm=vm, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert set(job.result["deleted_disks"]) == {disk.name, base.name}
    assert not VirtualDisk.objects.filter(pk__in=[disk.pk, base.pk]).exists()
    assert "src.qcow2" not in _volumes(server, repo)


def test_deleting_a_vm_keeps_a_disk_another_vm_uses(vm, repo, pool, user):
    disk = vm.disk_slots.get(slot=0).virtual_disk
    other = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="other", status=VmStatus.STOPPED)
    f.VmDiskSlotFactory(vm=other, slot=0, virtual_disk=disk)
    job = vm_delete(vm=vm, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert job.result["kept_disks"] == [{"disk": disk.name, "reason": "also used by other"}]
    assert VirtualDisk.objects.filter(pk=disk.pk).exists()


def test_deleting_a_vm_keeps_a_disk_thin_clones_stand_on(vm, repo, user):
    """A disk thin-cloned the old way (an overlay straight on it) is kept while the clone lives."""
    disk = vm.disk_slots.get(slot=0).virtual_disk
    f.VirtualDiskFactory(repository=repo, volume="old-clone.qcow2", size_bytes=1 << 20, backing_disk=disk)
    job = vm_delete(vm=vm, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert job.result["kept_disks"][0]["reason"].startswith("thin clones stand on it")


def test_a_hot_clone_must_be_asked_as_thin_and_the_error_says_why(vm):
    vm.status = VmStatus.RUNNING
    with pytest.raises(Conflict, match="at one instant"):
        rules.check_clone(vm=vm, clone_types=["SPARSE"])
    rules.check_clone(vm=vm, clone_types=["THIN"])


def test_a_failed_thin_clone_leaves_the_source_as_it_was(vm, repo, server, monkeypatch):
    disk = vm.disk_slots.get(slot=0).virtual_disk
    before = _volumes(server, repo)

    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(disk_copies, "_record_thin", broken)
    with pytest.raises(RuntimeError):
        _thin(disk, repo)
    disk.refresh_from_db()
    assert disk.volume == "src.qcow2" and disk.backing_disk is None
    assert not VirtualDisk.objects.filter(thin_base=True).exists()
    assert _volumes(server, repo) == before  # both overlays removed


def test_a_thin_base_cannot_be_attached_to_a_vm(vm, repo, pool, user):
    """A base is read-only under its clones: a VM writing to it would change every clone."""
    from ovmweb.inventory.services.vm_devices import vm_disk_attach

    disk = vm.disk_slots.get(slot=0).virtual_disk
    base = _thin(disk, repo).backing_disk
    other = f.VirtualMachineFactory(server_pool=pool, repository=repo, name="other", status=VmStatus.STOPPED)
    with pytest.raises(Conflict, match="read-only base of thin clones"):
        vm_disk_attach(vm=other, user=user, virtual_disk=base)
    assert not base.slots.exists()
