"""Server pools, anti-affinity groups and processor compatibility groups: the rules of
ovmweb.inventory.services.pools, through the API."""

import pytest

from ovmweb.inventory.models import AntiAffinityGroup, ProcessorCompatibilityGroup, ServerPool
from ovmweb.jobs.models import Event
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_pool_crud_records_events(api):
    created = api.post("/api/v1/server-pools/", {"name": "p1", "architecture": "SPARC"}, format="json")
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert api.patch(f"/api/v1/server-pools/{pk}/", {"description": "sparc boxes"}, format="json").status_code == 200
    assert ServerPool.objects.get(pk=pk).description == "sparc boxes"
    assert api.delete(f"/api/v1/server-pools/{pk}/").status_code == 204
    assert not ServerPool.objects.filter(pk=pk).exists()
    assert list(Event.objects.order_by("id").values_list("type", flat=True)) == [
        "pool.created",
        "pool.updated",
        "pool.deleted",
    ]


@pytest.mark.parametrize("what", ["server", "vm", "repository"])
def test_pool_in_use_cannot_be_deleted(api, what):
    pool = f.ServerPoolFactory(name="busy")
    if what == "server":
        f.ServerFactory(server_pool=pool)
    elif what == "vm":
        f.VirtualMachineFactory(server_pool=pool)
    else:
        f.RepositoryFactory(server_pools=[pool])
    response = api.delete(f"/api/v1/server-pools/{pool.pk}/")
    assert response.status_code == 409
    assert "busy" in response.json()["detail"]
    assert ServerPool.objects.filter(pk=pool.pk).exists()


def test_pool_architecture_is_fixed_while_it_has_vms(api):
    vm = f.VirtualMachineFactory()
    response = api.patch(f"/api/v1/server-pools/{vm.server_pool_id}/", {"architecture": "SPARC"}, format="json")
    assert response.status_code == 409
    assert ServerPool.objects.get(pk=vm.server_pool_id).architecture == "X86"


def test_anti_affinity_group_only_takes_vms_of_its_pool(api):
    pool = f.ServerPoolFactory()
    mine, stranger = f.VirtualMachineFactory(server_pool=pool), f.VirtualMachineFactory()
    response = api.post(
        "/api/v1/anti-affinity-groups/",
        {"name": "apart", "server_pool": pool.pk, "vms": [mine.pk, stranger.pk]},
        format="json",
    )
    assert response.status_code == 400 and "vms" in response.json()
    assert not AntiAffinityGroup.objects.exists()
    response = api.post(
        "/api/v1/anti-affinity-groups/", {"name": "apart", "server_pool": pool.pk, "vms": [mine.pk]}, format="json"
    )
    assert response.status_code == 201, response.json()
    group = AntiAffinityGroup.objects.get()
    assert list(group.vms.all()) == [mine]
    # Same name twice in one pool: a field error, not a database error.
    again = api.post("/api/v1/anti-affinity-groups/", {"name": "apart", "server_pool": pool.pk}, format="json")
    assert again.status_code == 400 and "name" in again.json()
    moved = api.patch(
        f"/api/v1/anti-affinity-groups/{group.pk}/", {"server_pool": f.ServerPoolFactory().pk}, format="json"
    )
    assert moved.status_code == 400
    assert api.delete(f"/api/v1/anti-affinity-groups/{group.pk}/").status_code == 204


def test_compatibility_group_rules(api):
    intel = f.ServerFactory(cpu_vendor="GenuineIntel")
    amd = f.ServerFactory(cpu_vendor="AuthenticAMD")
    mixed = api.post(
        "/api/v1/processor-compatibility-groups/", {"name": "mixed", "servers": [intel.pk, amd.pk]}, format="json"
    )
    assert mixed.status_code == 400 and "servers" in mixed.json()
    assert not ProcessorCompatibilityGroup.objects.exists()
    created = api.post(
        "/api/v1/processor-compatibility-groups/", {"name": "intel", "servers": [intel.pk]}, format="json"
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    intel.refresh_from_db()
    assert intel.compatibility_group_id == pk
    refused = api.delete(f"/api/v1/processor-compatibility-groups/{pk}/")
    assert refused.status_code == 409 and "intel" in refused.json()["detail"]
    emptied = api.patch(f"/api/v1/processor-compatibility-groups/{pk}/", {"servers": []}, format="json")
    assert emptied.status_code == 200 and emptied.json()["servers"] == []
    assert api.delete(f"/api/v1/processor-compatibility-groups/{pk}/").status_code == 204
