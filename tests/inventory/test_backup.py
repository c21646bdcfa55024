"""Seed 7.17: a backup is a cold clone named <vm>-backup-<UTC timestamp>, into a chosen
repository; a running VM only as a hot clone with thin disks (7.6). Real job runner,
libvirt's test:///default driver with directory pools in tmp_path."""

import re

import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.hypervisor.connections import driver_for
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.services.repositories import define_pools, pool_name, undefine_pools
from ovmweb.inventory.services.vm_copies import vm_backup
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f


@pytest.fixture
def repos(libvirt_test_driver, tmp_path, pool, server):
    made = []
    for name in ("primary", "backups"):
        (tmp_path / name).mkdir()
        repo = f.RepositoryFactory(server_pools=[pool], path=str(tmp_path / name))
        define_pools(driver_for(server), repo)
        made.append(repo)
    yield made
    for repo in made:
        undefine_pools(driver_for(server), repo)


@pytest.fixture
def vm_with_disk(repos, pool, server):
    primary = repos[0]
    disk = f.VirtualDiskFactory(repository=primary, volume="base.qcow2", size_bytes=1 << 20)
    driver_for(server).volume_create(pool_name(primary, "disks"), "base.qcow2", 1 << 20)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=primary, name="db01", status=VmStatus.STOPPED)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=disk)
    return vm


def test_backup_of_a_stopped_vm_is_a_cold_copy_into_the_chosen_repository(real_estate, tmp_path):
    """Against this machine's libvirtd: the disk is really copied into the other repository."""
    from pathlib import Path

    from ovmweb.inventory.models import Repository
    from ovmweb.inventory.services import repositories, storage

    user, server, pool, primary = real_estate["user"], real_estate["server"], real_estate["pool"], real_estate["repo"]
    (tmp_path / "backups").mkdir()
    repositories.repository_create(
        user=user, name="backups", kind="LOCAL", path=str(tmp_path / "backups"), server=server, server_pools=[pool]
    )
    disk_job = storage.disk_create(user=user, repository=primary, name="data", size_bytes=4 << 20)
    run_pending_jobs()
    backups = Repository.objects.get(name="backups")
    vm = f.VirtualMachineFactory(server_pool=pool, repository=primary, name="db01", status=VmStatus.STOPPED)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=disk_job.target)
    job = vm_backup(vm=vm, user=user, repository=backups)
    assert job.operation == "vm.clone" and job.summary.startswith("Back up db01")
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    copy = job.target
    assert re.fullmatch(r"db01-backup-\d{8}T\d{6}Z", copy.name)
    assert copy.status == VmStatus.STOPPED and copy.repository == backups
    disk = copy.disk_slots.get(slot=0).virtual_disk
    assert disk.repository == backups and disk.backing_disk is None  # a full (sparse) copy, not an overlay
    assert (Path(backups.path) / "VirtualDisks" / disk.volume).stat().st_size > 0
    assert (Path(primary.path) / "VirtualDisks" / disk_job.target.volume).exists()  # the original stays


def test_backup_defaults_to_the_vms_own_repository(vm_with_disk, repos, user):
    job = vm_backup(vm=vm_with_disk, user=user)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert job.target.repository == repos[0]


def test_running_vm_is_backed_up_only_as_a_thin_hot_clone(vm_with_disk, repos, user, server, monkeypatch):
    """The seed's rule (7.6) stands: a hot clone is asked for as thin. It is made by the
    hypervisor's backup job (the real one: tests/integration/test_point_in_time.py) into a
    standalone volume, never as an overlay on the disk the running VM keeps writing."""
    from pathlib import Path

    from ovmweb.hypervisor.base import BackupResult
    from ovmweb.hypervisor.libvirt import LibvirtDriver

    asked = {}

    def fake_backup(self, uuid, copies, **kwargs):  # the test driver has no backup job
        asked.update(copies)
        for target in copies.values():
            self.volume_create(pool_name(repos[0], "disks"), Path(target).name, 1 << 20)
        return BackupResult(quiesced=False)

    monkeypatch.setattr(LibvirtDriver, "disks_backup", fake_backup)
    vm_with_disk.status, vm_with_disk.server = VmStatus.RUNNING, server
    vm_with_disk.save()
    source_disk = vm_with_disk.disk_slots.get(slot=0).virtual_disk
    job = vm_backup(vm=vm_with_disk, user=user)
    assert [d["clone_type"] for d in job.params["disks"]] == ["THIN"]
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    copy = job.target.disk_slots.get(slot=0).virtual_disk
    assert copy.backing_disk is None and copy.volume != source_disk.volume
    assert list(asked) == [f"{repos[0].path}/VirtualDisks/base.qcow2"]
    assert asked[f"{repos[0].path}/VirtualDisks/base.qcow2"].endswith(copy.volume)
    source_disk.refresh_from_db()
    assert source_disk.volume == "base.qcow2" and source_disk.backing_disk is None  # untouched


def test_suspended_vm_is_refused(vm_with_disk, user):
    vm_with_disk.status = VmStatus.SUSPENDED
    vm_with_disk.save()
    with pytest.raises(Conflict, match="SUSPENDED"):
        vm_backup(vm=vm_with_disk, user=user)


def test_repository_the_pool_cannot_see_is_a_field_error(vm_with_disk, user):
    elsewhere = f.RepositoryFactory()
    with pytest.raises(ValidationError) as exc:
        vm_backup(vm=vm_with_disk, user=user, repository=elsewhere)
    assert "repository" in exc.value.message_dict
