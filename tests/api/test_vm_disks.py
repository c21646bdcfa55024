"""Disk slots through the API: POST /api/v1/vms/{id}/disks/ attaches a virtual disk or an
ISO, DELETE /api/v1/vms/{id}/disks/{slot}/ detaches; a running VM gets a hot-plug job,
a SUSPENDED one is refused (409), bad input is 400 with nothing written. VNICs of a VM
through /api/v1/vnics/ follow the same rules."""

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VmDiskSlot, Vnic
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def make_vm(pool, repo, **kw):
    if kw.get("status") in (VmStatus.RUNNING, VmStatus.SUSPENDED):
        kw.setdefault("server", f.ServerFactory(server_pool=pool))
    return f.VirtualMachineFactory(server_pool=pool, repository=repo, **kw)


def attach(api, vm, **body):
    return api.post(f"/api/v1/vms/{vm.pk}/disks/", body, format="json")


def test_attach_disk_to_stopped_vm(api, pool, repo):
    vm = make_vm(pool, repo)
    disk = f.VirtualDiskFactory(repository=repo)
    response = attach(api, vm, virtual_disk=disk.pk)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["job"] is None and "Link" not in response.headers
    assert (body["slot"]["slot"], body["slot"]["kind"], body["slot"]["virtual_disk"], body["slot"]["bus"]) == (
        0,
        "DISK",
        disk.pk,
        "sata",
    )
    assert body["slot"]["virtual_disk_name"] == disk.name
    assert api.get(f"/api/v1/vms/{vm.pk}/").json()["disks"][0]["virtual_disk"] == disk.pk
    # The same disk twice is a conflict; an explicit bus is kept.
    assert attach(api, vm, virtual_disk=disk.pk).status_code == 409
    other = attach(api, vm, virtual_disk=f.VirtualDiskFactory(repository=repo).pk, bus="virtio")
    assert other.status_code == 201 and other.json()["slot"]["slot"] == 1 and other.json()["slot"]["bus"] == "virtio"


def test_attach_to_running_vm_queues_a_hot_plug_job(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.RUNNING)
    disk = f.VirtualDiskFactory(repository=repo)
    response = attach(api, vm, virtual_disk=disk.pk)
    assert response.status_code == 201, response.json()
    job = response.json()["job"]
    assert job["operation"] == "vm.hot_update" and job["status"] == "QUEUED" and job["target_id"] == vm.pk
    assert Job.objects.get(pk=job["id"]).params["attach_slot_id"] == response.json()["slot"]["id"]
    assert response.headers["Link"] == f'</api/v1/jobs/{job["id"]}/>; rel="monitor"'


def test_attach_iso_fills_the_empty_drive(api, pool, repo):
    vm = make_vm(pool, repo)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    iso = f.IsoFileFactory(repository=repo)
    response = attach(api, vm, iso=iso.pk)
    assert response.status_code == 201, response.json()
    slot = response.json()["slot"]
    assert (slot["slot"], slot["kind"], slot["iso"], slot["iso_name"], slot["bus"]) == (
        1,
        "CDROM",
        iso.pk,
        iso.name,
        "sata",
    )


def test_attach_to_suspended_vm_is_409(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.SUSPENDED)
    response = attach(api, vm, virtual_disk=f.VirtualDiskFactory(repository=repo).pk)
    assert response.status_code == 409 and "SUSPENDED" in response.json()["detail"].upper()
    assert not VmDiskSlot.objects.exists() and not Job.objects.exists()


def test_windows_without_pv_drivers_cannot_hot_plug(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.RUNNING, os_type="WINDOWS", pv_drivers_installed=False)
    response = attach(api, vm, virtual_disk=f.VirtualDiskFactory(repository=repo).pk)
    assert response.status_code == 409 and "Paravirtual Drivers" in response.json()["detail"]
    assert not VmDiskSlot.objects.exists() and not Job.objects.exists()


def test_disk_used_elsewhere_is_409_unless_shareable(api, pool, repo):
    disk = f.VirtualDiskFactory(repository=repo)
    f.VmDiskSlotFactory(vm=make_vm(pool, repo), slot=0, virtual_disk=disk)
    vm = make_vm(pool, repo)
    refused = attach(api, vm, virtual_disk=disk.pk)
    assert refused.status_code == 409 and "not shareable" in refused.json()["detail"]
    shared = f.VirtualDiskFactory(repository=repo, shareable=True)
    f.VmDiskSlotFactory(vm=make_vm(pool, repo), slot=0, virtual_disk=shared)
    assert attach(api, vm, virtual_disk=shared.pk).status_code == 201


@pytest.mark.parametrize(
    "body,field",
    [
        ({}, "non_field_errors"),
        ({"virtual_disk": 1, "iso": 1}, "non_field_errors"),
        ({"virtual_disk": 999999}, "virtual_disk"),
        ({"iso": "x"}, "iso"),
        ({"virtual_disk": None}, "virtual_disk"),
        ({"iso": 1, "bus": "virtio"}, "bus"),
        ({"virtual_disk": 1, "bus": "scsi"}, "bus"),
        ({"virtual_disk": 1, "slot": 3}, "slot"),
    ],
)
def test_bad_attach_input_is_400(api, pool, repo, body, field):
    vm = make_vm(pool, repo)
    disk = f.VirtualDiskFactory(repository=repo)
    iso = f.IsoFileFactory(repository=repo)
    body = {
        k: (disk.pk if k == "virtual_disk" and v == 1 else iso.pk if k == "iso" and v == 1 else v)
        for k, v in body.items()
    }
    response = attach(api, vm, **body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not VmDiskSlot.objects.exists()


def test_disk_in_a_repository_the_pool_cannot_see_is_400(api, pool, repo):
    vm = make_vm(pool, repo)
    response = attach(api, vm, virtual_disk=f.VirtualDiskFactory(repository=f.RepositoryFactory()).pk)
    assert response.status_code == 400 and "virtual_disk" in response.json()
    assert not VmDiskSlot.objects.exists()


def test_detach_from_stopped_vm_is_204(api, pool, repo):
    vm = make_vm(pool, repo)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    f.CdromSlotFactory(vm=vm, slot=1)
    assert api.delete(f"/api/v1/vms/{vm.pk}/disks/1/").status_code == 204
    assert list(vm.disk_slots.values_list("slot", flat=True)) == [0]
    assert api.delete(f"/api/v1/vms/{vm.pk}/disks/1/").status_code == 404
    assert api.delete(f"/api/v1/vms/{vm.pk}/disks/0/").status_code == 204
    assert not vm.disk_slots.exists() and not Job.objects.exists()


def test_detach_from_running_vm_is_202_with_the_job(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.RUNNING)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    cdrom = f.CdromSlotFactory(vm=vm, slot=1)
    response = api.delete(f"/api/v1/vms/{vm.pk}/disks/1/")
    assert response.status_code == 202, response.json()
    assert response.json()["operation"] == "vm.hot_update"
    assert Job.objects.get(pk=response.json()["id"]).params["media"]["new"] == ""
    # The CD-ROM of a running VM is ejected: the drive stays, empty.
    cdrom.refresh_from_db()
    assert cdrom.kind == "EMPTY" and cdrom.iso is None


def test_detach_from_suspended_vm_is_409(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.SUSPENDED)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    response = api.delete(f"/api/v1/vms/{vm.pk}/disks/0/")
    assert response.status_code == 409 and "SUSPENDED" in response.json()["detail"].upper()
    assert vm.disk_slots.count() == 1


def test_disk_endpoints_need_the_change_permission(plain_api, pool, repo):
    vm = make_vm(pool, repo)
    f.VmDiskSlotFactory(vm=vm, slot=0, virtual_disk=f.VirtualDiskFactory(repository=repo))
    assert (
        plain_api.post(
            f"/api/v1/vms/{vm.pk}/disks/", {"iso": f.IsoFileFactory(repository=repo).pk}, format="json"
        ).status_code
        == 403
    )
    assert plain_api.delete(f"/api/v1/vms/{vm.pk}/disks/0/").status_code == 403
    assert vm.disk_slots.count() == 1


# ---------------------------------------------------------------- VNICs (seed 7.4)


def test_vnic_on_running_vm_is_hot_added_and_removed(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.RUNNING)
    response = api.post("/api/v1/vnics/", {"vm": vm.pk, "network": f.NetworkFactory().pk}, format="json")
    assert response.status_code == 201, response.json()
    vnic = response.json()
    assert Job.objects.get(operation="vm.hot_update").params["attach_vnic_id"] == vnic["id"]
    Job.objects.all().delete()
    from ovmweb.jobs.models import ObjectLock

    ObjectLock.objects.all().delete()
    assert api.delete(f"/api/v1/vnics/{vnic['id']}/").status_code == 204
    assert Job.objects.get(operation="vm.hot_update").params["detach_mac"] == vnic["mac"]


def test_vnic_delete_of_suspended_vm_is_409(api, pool, repo):
    vm = make_vm(pool, repo, status=VmStatus.SUSPENDED)
    vnic = f.VnicFactory(vm=vm)
    response = api.delete(f"/api/v1/vnics/{vnic.pk}/")
    assert response.status_code == 409 and "SUSPENDED" in response.json()["detail"].upper()
    assert Vnic.objects.filter(pk=vnic.pk).exists()


def test_vnic_bad_input_is_400(api, pool, repo):
    vm = make_vm(pool, repo)
    for body, field in (
        ({"vm": vm.pk, "mac": "01:00:5e:00:00:01"}, "mac"),
        ({"vm": vm.pk, "model": "rtl"}, "model"),
        ({"vm": 999999}, "vm"),
        ({"vm": vm.pk, "network": 999999}, "network"),
    ):
        response = api.post("/api/v1/vnics/", body, format="json")
        assert response.status_code == 400 and field in response.json(), (body, response.json())
    assert not Vnic.objects.exists()
