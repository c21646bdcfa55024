"""POST /api/v1/vms/{id}/backup/: 202 with the cold-clone job (seed 7.17)."""

import re

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine
from ovmweb.jobs.models import Job
from tests.factories import RepositoryFactory, VirtualDiskFactory, VirtualMachineFactory, VmDiskSlotFactory


@pytest.fixture
def stopped_vm(pool):
    repo = RepositoryFactory(server_pools=[pool])
    vm = VirtualMachineFactory(server_pool=pool, repository=repo, name="web01", status=VmStatus.STOPPED)
    VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=VirtualDiskFactory(repository=repo))
    return vm


def test_backup_answers_202_with_the_clone_job(api, stopped_vm, pool):
    target = RepositoryFactory(server_pools=[pool], name="backups")
    response = api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {"repository": target.pk}, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.operation == "vm.clone" and job.params["disks"][0]["target_repository_id"] == target.pk
    copy = VirtualMachine.objects.get(pk=job.target_id)
    assert re.fullmatch(r"web01-backup-\d{8}T\d{6}Z", copy.name) and copy.repository == target


def test_backup_without_body_uses_the_vms_repository(api, stopped_vm):
    response = api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {}, format="json")
    assert response.status_code == 202, response.content
    assert VirtualMachine.objects.get(pk=Job.objects.get().target_id).repository == stopped_vm.repository


def test_backup_of_a_suspended_vm_is_409_naming_the_state(api, stopped_vm):
    VirtualMachine.objects.filter(pk=stopped_vm.pk).update(status=VmStatus.SUSPENDED)
    response = api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {}, format="json")
    assert response.status_code == 409 and "SUSPENDED" in response.json()["detail"]
    assert not Job.objects.exists()


def test_backup_bad_input_and_permission(api, plain_api, stopped_vm):
    assert api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {"repository": 999999}, format="json").status_code == 400
    assert api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {"nope": 1}, format="json").status_code == 400
    assert plain_api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {}, format="json").status_code in (403, 404)
    unseen = RepositoryFactory()
    response = api.post(f"/api/v1/vms/{stopped_vm.pk}/backup/", {"repository": unseen.pk}, format="json")
    assert response.status_code == 400 and "repository" in response.json()
