"""POST /api/v1/vms/{id}/move/ (seed 7.7): with a clone customizer or one target
repository; 202 with the vm.move job, 409 while the VM runs, 400 for bad input."""

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def stopped_vm(pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    return vm


def move(api, vm, **body):
    return api.post(f"/api/v1/vms/{vm.pk}/move/", body, format="json")


def test_move_to_one_repository(api, pool, stopped_vm):
    target = f.RepositoryFactory(server_pools=[pool])
    response = move(api, stopped_vm, target_repository=target.pk)
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.operation == "vm.move" and job.params["repository_id"] == target.pk
    assert [d["target_repository_id"] for d in job.params["disks"]] == [target.pk]


def test_move_with_a_customizer(api, pool, stopped_vm):
    from ovmweb.inventory.services.customizers import customizer_create

    target = f.RepositoryFactory(server_pools=[pool])
    customizer = customizer_create(
        vm=stopped_vm,
        user=None,
        name="plan",
        disks=[{"slot": stopped_vm.disk_slots.get(), "target_repository": target}],
    )
    response = move(api, stopped_vm, customizer=customizer.pk)
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["id"]).params["disks"][0]["target_repository_id"] == target.pk


def test_move_refusals(api, pool, repo, stopped_vm):
    target = f.RepositoryFactory(server_pools=[pool])
    for body, field in (
        ({}, "non_field_errors"),
        (
            {"customizer": f.CloneCustomizerFactory(vm=stopped_vm).pk, "target_repository": target.pk},
            "non_field_errors",
        ),
        ({"target_repository": 999999}, "target_repository"),
        ({"target_repository": f.RepositoryFactory().pk}, "target_repository"),  # unseen by the pool
        ({"customizer": f.CloneCustomizerFactory().pk}, "customizer"),
    ):  # another VM's
        response = move(api, stopped_vm, **body)
        assert response.status_code == 400 and field in response.json(), (body, response.json())
    running = f.VirtualMachineFactory(
        server_pool=pool, repository=repo, status=VmStatus.RUNNING, server=f.ServerFactory(server_pool=pool)
    )
    refused = move(api, running, target_repository=target.pk)
    assert refused.status_code == 409 and "RUNNING" in refused.json()["detail"]
    assert not Job.objects.exists()
