"""Clone customizers: full CRUD through the API and ``customizer_update``; an update keeps
the VM, and a refused change (slot or VNIC of another VM, duplicate name) writes nothing."""

import pytest
from django.core.exceptions import ValidationError

from ovmweb.inventory.models import CloneCustomizer, CloneCustomizerDisk
from ovmweb.inventory.services.customizers import customizer_create, customizer_update
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def vm_with_devices(pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    slots = [f.VmDiskSlotFactory(vm=vm, slot=i, virtual_disk=f.VirtualDiskFactory(repository=repo)) for i in (0, 1)]
    vnic = f.VnicFactory(vm=vm)
    return vm, slots, vnic


def test_crud(api, vm_with_devices, pool):
    vm, (s0, s1), vnic = vm_with_devices
    target, net = f.RepositoryFactory(server_pools=[pool]), f.NetworkFactory()
    created = api.post(
        "/api/v1/clone-customizers/",
        {
            "name": "plan",
            "vm": vm.pk,
            "disks": [{"slot": s0.pk, "target_repository": target.pk, "clone_type": "THIN"}],
            "networks": [{"vnic": vnic.pk, "network": net.pk}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    cid = created.json()["id"]
    url = f"/api/v1/clone-customizers/{cid}/"
    assert api.get(url).json()["networks"] == [{"vnic": vnic.pk, "network": net.pk}]

    # PATCH without disks/networks keeps them.
    renamed = api.patch(url, {"name": "plan-b", "description": "to the big array"}, format="json")
    assert renamed.status_code == 200, renamed.json()
    assert renamed.json()["name"] == "plan-b" and len(renamed.json()["disks"]) == 1
    assert renamed.json()["networks"] == [{"vnic": vnic.pk, "network": net.pk}]

    # Given lists replace the whole list.
    other = f.RepositoryFactory(server_pools=[pool])
    replaced = api.patch(
        url,
        {"disks": [{"slot": s1.pk, "target_repository": other.pk, "clone_type": "NON_SPARSE"}], "networks": []},
        format="json",
    )
    assert replaced.status_code == 200, replaced.json()
    assert replaced.json()["disks"] == [{"slot": s1.pk, "target_repository": other.pk, "clone_type": "NON_SPARSE"}]
    assert replaced.json()["networks"] == []
    assert CloneCustomizerDisk.objects.filter(customizer_id=cid).count() == 1

    put = api.put(url, {"name": "plan-c", "description": "", "disks": [], "networks": []}, format="json")
    assert put.status_code == 200, put.json()
    assert (put.json()["name"], put.json()["disks"], put.json()["vm"]) == ("plan-c", [], vm.pk)

    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_update_refusals_write_nothing(api, vm_with_devices, repo):
    vm, (s0, _s1), vnic = vm_with_devices
    target = repo
    customizer = customizer_create(
        vm=vm, user=None, name="plan", disks=[{"slot": s0, "target_repository": target, "clone_type": "SPARSE"}]
    )
    customizer_create(vm=vm, user=None, name="taken")
    url = f"/api/v1/clone-customizers/{customizer.pk}/"
    stranger = f.VmDiskSlotFactory(slot=0)
    foreign_vnic = f.VnicFactory()
    for body, field in (
        ({"vm": f.VirtualMachineFactory().pk}, "vm"),  # a customizer stays with its VM
        ({"name": "taken"}, None),  # unique per VM
        ({"name": ""}, "name"),
        ({"disks": [{"slot": stranger.pk, "target_repository": target.pk}]}, "disks"),
        ({"disks": [{"slot": s0.pk, "target_repository": target.pk, "clone_type": "COPY"}]}, "disks"),
        # A target repository the VM's server pool does not see.
        ({"disks": [{"slot": s0.pk, "target_repository": f.RepositoryFactory().pk}]}, "disks"),
        ({"networks": [{"vnic": foreign_vnic.pk, "network": f.NetworkFactory().pk}]}, "networks"),
        ({"colour": "red"}, "colour"),
    ):
        response = api.patch(url, body, format="json")
        assert response.status_code == 400, (body, response.json())
        if field:
            assert field in response.json(), (body, response.json())
        customizer.refresh_from_db()
        assert customizer.name == "plan" and customizer.vm_id == vm.pk
        assert list(customizer.disks.values_list("slot_id", "clone_type")) == [(s0.pk, "SPARSE")]


def test_customizer_update_service(vm_with_devices, repo):
    vm, (s0, s1), vnic = vm_with_devices
    target = repo
    customizer = customizer_create(
        vm=vm,
        user=None,
        name="plan",
        disks=[{"slot": s0, "target_repository": target}],
        networks=[{"vnic": vnic, "network": f.NetworkFactory()}],
    )
    updated = customizer_update(
        customizer=customizer, user=None, disks=[{"slot": s1, "target_repository": target, "clone_type": "THIN"}]
    )
    assert list(updated.disks.values_list("slot_id", "clone_type")) == [(s1.pk, "THIN")]
    assert updated.networks.count() == 1 and updated.name == "plan"
    # A slot of another VM: refused, and the whole update is rolled back.
    with pytest.raises(ValidationError, match="not a disk of"):
        customizer_update(
            customizer=customizer,
            user=None,
            name="renamed",
            disks=[{"slot": f.VmDiskSlotFactory(slot=0), "target_repository": target}],
        )
    customizer.refresh_from_db()
    assert customizer.name == "plan" and list(customizer.disks.values_list("slot_id", flat=True)) == [s1.pk]
    # The same slot twice breaks the per-customizer uniqueness.
    with pytest.raises(ValidationError):
        customizer_update(customizer=customizer, user=None, disks=[{"slot": s0, "target_repository": target}] * 2)
    assert CloneCustomizer.objects.get(pk=customizer.pk).disks.get().slot_id == s1.pk
