"""POST /api/v1/vms/{id}/migrate/ with target_server, target_pool and target_repository
(seed 7.7, 7.12, 7.16): 202 with the vm.migrate job, 409 when a rule forbids it, 400 for
bad input; nothing is queued on a refusal."""

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def migrate(api, vm, **body):
    return api.post(f"/api/v1/vms/{vm.pk}/migrate/", body, format="json")


@pytest.fixture
def local_setup(pool):
    a = f.ServerFactory(server_pool=pool, name="a")
    b = f.ServerFactory(server_pool=pool, name="b")
    repo_a = f.RepositoryFactory(kind="LOCAL", server=a, path="/srv/a")
    repo_b = f.RepositoryFactory(kind="LOCAL", server=b, path="/srv/b")
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo_a, server=a, status=VmStatus.RUNNING)
    f.VmDiskSlotFactory(vm=vm, slot=0)
    return {"a": a, "b": b, "repo_a": repo_a, "repo_b": repo_b, "vm": vm}


def test_live_migration_to_a_server(api, pool, repo):
    a, b = f.ServerFactory(server_pool=pool), f.ServerFactory(server_pool=pool)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, server=a, status=VmStatus.RUNNING)
    response = migrate(api, vm, target_server=b.pk)
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.operation == "vm.migrate" and job.params == {
        "vm_id": vm.pk,
        "target_server_id": b.pk,
        "storage_migration": False,
    }


def test_storage_migration_with_target_repository(api, local_setup):
    s = local_setup
    response = migrate(api, s["vm"], target_repository=s["repo_b"].pk)
    assert response.status_code == 202, response.json()
    # Naming the target server's local repository names the server too.
    assert Job.objects.get(pk=response.json()["id"]).params == {
        "vm_id": s["vm"].pk,
        "target_server_id": s["b"].pk,
        "storage_migration": True,
        "target_repository_id": s["repo_b"].pk,
    }


def test_storage_migration_refusals(api, local_setup, pool):
    s = local_setup
    # The source server's own repository is local to another server than the target.
    wrong = migrate(api, s["vm"], target_server=s["b"].pk, target_repository=s["repo_a"].pk)
    assert wrong.status_code == 409 and "local to another server" in wrong.json()["detail"]
    # A shared repository the target's pool does not see.
    unseen = migrate(api, s["vm"], target_server=s["b"].pk, target_repository=f.RepositoryFactory().pk)
    assert unseen.status_code == 409 and "not presented" in unseen.json()["detail"]
    # Neither server nor repository named: a field error.
    neither = migrate(api, s["vm"])
    assert neither.status_code == 400 and "target_server" in neither.json()
    # A server without a repository to receive the disks.
    bare = migrate(api, s["vm"], target_server=f.ServerFactory(server_pool=pool).pk)
    assert bare.status_code == 409 and "no repository to receive them" in bare.json()["detail"]
    assert not Job.objects.exists()


def test_cold_migration_to_a_pool(api, pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    other = f.ServerPoolFactory()
    # Refused while the target pool cannot see the VM's repository (no server there could start it).
    unseen = migrate(api, vm, target_pool=other.pk)
    assert unseen.status_code == 409 and "not presented to that pool" in unseen.json()["detail"]
    repo.server_pools.add(other)
    response = migrate(api, vm, target_pool=other.pk)
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["id"]).params == {"vm_id": vm.pk, "target_pool_id": other.pk}
    # A stopped VM is not sent to a server: it is placed when it starts.
    Job.objects.all().delete()
    from ovmweb.jobs.models import ObjectLock

    ObjectLock.objects.all().delete()
    to_server = migrate(api, vm, target_server=f.ServerFactory(server_pool=pool).pk)
    assert to_server.status_code == 400 and "target_server" in to_server.json()
    assert not Job.objects.exists()


def test_migration_state_and_rule_conflicts(api, pool, repo):
    suspended = f.VirtualMachineFactory(
        server_pool=pool, repository=repo, server=f.ServerFactory(server_pool=pool), status=VmStatus.SUSPENDED
    )
    refused = migrate(api, suspended, target_server=f.ServerFactory(server_pool=pool).pk)
    assert refused.status_code == 409 and "SUSPENDED" in refused.json()["detail"]
    pinned = f.VirtualMachineFactory(
        server_pool=pool,
        repository=repo,
        server=f.ServerFactory(server_pool=pool),
        status=VmStatus.RUNNING,
        cpu_pinning="0-1",
    )
    refused = migrate(api, pinned, target_server=f.ServerFactory(server_pool=pool).pk)
    assert refused.status_code == 409 and "pinned" in refused.json()["detail"]
    locked = f.ServerFactory(server_pool=pool, inbound_migration_lock=True)
    running = f.VirtualMachineFactory(
        server_pool=pool, repository=repo, server=f.ServerFactory(server_pool=pool), status=VmStatus.RUNNING
    )
    refused = migrate(api, running, target_server=locked.pk)
    assert refused.status_code == 409, refused.json()
    other_pool = migrate(api, running, target_pool=f.ServerPoolFactory().pk)
    assert other_pool.status_code == 409 and "one server pool" in other_pool.json()["detail"]
    assert not Job.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"target_repository": 999999}, "target_repository"),
        ({"target_repository": "x"}, "target_repository"),
        ({"target_server": -1}, "target_server"),
        ({"target_pool": [1]}, "target_pool"),
        ({"target": 1}, "target"),
    ],
)
def test_bad_migrate_input_is_400(api, local_setup, body, field):
    response = migrate(api, local_setup["vm"], **body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Job.objects.exists()
