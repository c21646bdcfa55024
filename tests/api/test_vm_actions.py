"""VM actions answer 202 with the Job they queued, or 409 naming the state (seed 7.8)."""

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_start_answers_202_with_the_job(api):
    vm = f.VirtualMachineFactory()
    response = api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    assert response.status_code == 202
    job = response.json()
    assert job["operation"] == "vm.start"
    assert job["status"] == "QUEUED" and job["progress"] == 0
    assert job["target_type"] == "inventory.virtualmachine" and job["target_id"] == vm.pk
    assert Job.objects.filter(pk=job["id"]).exists()
    vm.refresh_from_db()
    assert vm.status == VmStatus.STARTING
    # The job is followed at its own URL.
    assert api.get(f"/api/v1/jobs/{job['id']}/").json()["summary"] == job["summary"]


def test_forbidden_action_is_409_naming_the_state(api):
    vm = f.VirtualMachineFactory(status=VmStatus.STOPPED)
    response = api.post(f"/api/v1/vms/{vm.pk}/stop/", {}, format="json")
    assert response.status_code == 409
    assert "STOPPED" in response.json()["detail"]
    assert not Job.objects.exists()


def test_template_never_starts(api):
    vm = f.VirtualMachineFactory(status=VmStatus.TEMPLATE)
    response = api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    assert response.status_code == 409
    assert "TEMPLATE" in response.json()["detail"]
    vm.refresh_from_db()
    assert vm.status == VmStatus.TEMPLATE


@pytest.mark.parametrize(
    "action,before,after",
    [
        ("stop", "RUNNING", "STOPPING"),
        ("restart", "RUNNING", "STOPPING"),
        ("suspend", "RUNNING", "STOPPING"),
        ("kill", "RUNNING", "STOPPED"),
        ("resume", "SUSPENDED", "SUSPENDED"),
    ],
)
def test_actions_from_their_states(api, action, before, after):
    vm = f.VirtualMachineFactory(status=before, server=f.ServerFactory(), ha_enabled=True)
    response = api.post(f"/api/v1/vms/{vm.pk}/{action}/", {}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["operation"] == f"vm.{action}"
    vm.refresh_from_db()
    assert vm.status == after
    if action == "kill":
        assert vm.ha_enabled is False


def test_second_start_is_409(api):
    vm = f.VirtualMachineFactory()
    assert api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json").status_code == 202
    second = api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json")
    assert second.status_code == 409 and "STARTING" in second.json()["detail"]
    assert Job.objects.count() == 1


def test_action_with_unknown_field_is_400(api):
    vm = f.VirtualMachineFactory()
    response = api.post(f"/api/v1/vms/{vm.pk}/start/", {"force": True}, format="json")
    assert response.status_code == 400 and "force" in response.json()
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED and not Job.objects.exists()


def test_messages_queue_one_job_each(api):
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory())
    body = {"messages": [{"key": "hostname", "value": "web1"}, {"key": "pw", "value": "x", "hidden": True}]}
    response = api.post(f"/api/v1/vms/{vm.pk}/messages/", body, format="json")
    assert response.status_code == 202, response.json()
    jobs = response.json()["jobs"]
    assert len(jobs) == 2 and all(j["status"] == "QUEUED" for j in jobs)


def test_job_abort(api):
    vm = f.VirtualMachineFactory()
    job_id = api.post(f"/api/v1/vms/{vm.pk}/start/", {}, format="json").json()["id"]
    response = api.post(f"/api/v1/jobs/{job_id}/abort/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["status"] == "ABORTED" and response.json()["abort_requested"] is True
    again = api.post(f"/api/v1/jobs/{job_id}/abort/", {}, format="json")
    assert again.status_code == 409


def test_event_acknowledge(api, superuser):
    from ovmweb.jobs.services import event_record

    event = event_record(obj=None, type="test", text="look at me")
    response = api.post(f"/api/v1/events/{event.pk}/acknowledge/", {}, format="json")
    assert response.status_code == 200
    assert response.json()["acknowledged"] is True and response.json()["acknowledged_by"] == superuser.username


def test_running_vm_edit_is_pending(api):
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory(), keymap="en-us")
    response = api.patch(f"/api/v1/vms/{vm.pk}/", {"keymap": "de"}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["keymap"] == "en-us" and body["pending_changes"] == {"keymap": "de"}


def test_stopped_vm_edit_applies(api):
    vm = f.VirtualMachineFactory()
    response = api.patch(f"/api/v1/vms/{vm.pk}/", {"memory_mib": 1024, "name": "renamed"}, format="json")
    assert response.status_code == 200, response.json()
    vm.refresh_from_db()
    assert (vm.memory_mib, vm.name) == (1024, "renamed")


def test_create_vm_with_vnics(api):
    pool = f.ServerPoolFactory()
    repo = f.RepositoryFactory(server_pools=[pool])
    net = f.NetworkFactory(server_pools=[pool])
    body = {
        "name": "new-vm",
        "domain_type": "HVM",
        "os_type": "OL6",
        "server_pool": pool.pk,
        "repository": repo.pk,
        "vcpus": 2,
        "max_vcpus": 4,
        "memory_mib": 1024,
        "max_memory_mib": 2048,
        "source": {"kind": "none"},
        "vnics": [{"network": net.pk}, {"network": net.pk, "model": "e1000"}],
    }
    response = api.post("/api/v1/vms/", body, format="json")
    assert response.status_code == 201, response.json()
    vm = response.json()
    assert vm["status"] == "STOPPED" and vm["vcpus"] == 2
    macs = [n["mac"] for n in vm["vnics"]]
    assert len(set(macs)) == 2 and all(m.startswith("00:21:f6:") for m in macs)


def test_create_pvm_from_iso_is_refused(api):
    pool = f.ServerPoolFactory()
    iso = f.IsoFileFactory(repository=f.RepositoryFactory(server_pools=[pool]))
    body = {
        "name": "pvm",
        "domain_type": "PVM",
        "os_type": "OL6",
        "server_pool": pool.pk,
        "source": {"kind": "iso", "iso": iso.pk},
    }
    response = api.post("/api/v1/vms/", body, format="json")
    assert response.status_code == 400, response.json()
    from ovmweb.inventory.models import VirtualMachine

    assert not VirtualMachine.objects.filter(name="pvm").exists()


def test_delete_vm_answers_202(api):
    vm = f.VirtualMachineFactory()
    response = api.delete(f"/api/v1/vms/{vm.pk}/")
    assert response.status_code == 202 and response.json()["operation"] == "vm.delete"


def test_vnic_create_and_delete(api):
    vm = f.VirtualMachineFactory()
    response = api.post("/api/v1/vnics/", {"vm": vm.pk}, format="json")
    assert response.status_code == 201, response.json()
    vnic_id = response.json()["id"]
    assert api.delete(f"/api/v1/vnics/{vnic_id}/").status_code == 204
    assert api.get(f"/api/v1/vnics/{vnic_id}/").status_code == 404


def test_vnic_of_suspended_vm_is_409(api):
    vm = f.VirtualMachineFactory(status=VmStatus.SUSPENDED, server=f.ServerFactory())
    response = api.post("/api/v1/vnics/", {"vm": vm.pk}, format="json")
    assert response.status_code == 409 and "SUSPENDED" in response.json()["detail"].upper()
    assert not vm.vnics.exists()


def test_mac_range_put(api):
    assert (
        api.put(
            "/api/v1/mac-range/", {"start": "00:21:f6:10:00:00", "end": "00:21:f6:10:00:ff"}, format="json"
        ).status_code
        == 200
    )
    assert api.get("/api/v1/mac-range/").json() == {"start": "00:21:f6:10:00:00", "end": "00:21:f6:10:00:ff"}
    reversed_range = api.put(
        "/api/v1/mac-range/", {"start": "00:21:f6:10:00:ff", "end": "00:21:f6:10:00:00"}, format="json"
    )
    assert reversed_range.status_code == 400
    assert api.get("/api/v1/mac-range/").json()["start"] == "00:21:f6:10:00:00"


def test_clone_and_export_answer_202(api):
    vm = f.VirtualMachineFactory()
    disk = f.VirtualDiskFactory(repository=vm.repository)
    f.VmDiskSlotFactory(vm=vm, virtual_disk=disk, slot=0)
    clone = api.post(f"/api/v1/vms/{vm.pk}/clone/", {"name": "copy-1"}, format="json")
    assert clone.status_code == 202, clone.json()
    assert clone.json()["operation"] == "vm.clone"
    other = f.VirtualMachineFactory()
    export = api.post(f"/api/v1/vms/{other.pk}/export/", {}, format="json")
    assert export.status_code == 202 and export.json()["operation"] == "vm.export"
    # A second export while the first job holds the VM is refused, naming the holder.
    busy = api.post(f"/api/v1/vms/{other.pk}/export/", {}, format="json")
    assert busy.status_code == 409 and str(export.json()["id"]) in busy.json()["detail"]
    bad = api.post(f"/api/v1/vms/{vm.pk}/clone/", {"name": ""}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()


def test_clone_customizer_create_via_api(api):
    vm = f.VirtualMachineFactory()
    disk = f.VirtualDiskFactory(repository=vm.repository)
    slot = f.VmDiskSlotFactory(vm=vm, virtual_disk=disk, slot=0)
    target = f.RepositoryFactory(server_pools=[vm.server_pool])
    body = {
        "name": "to-target",
        "vm": vm.pk,
        "disks": [{"slot": slot.pk, "target_repository": target.pk, "clone_type": "SPARSE"}],
    }
    response = api.post("/api/v1/clone-customizers/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["disks"][0]["target_repository"] == target.pk
    other_slot = f.VmDiskSlotFactory(virtual_disk=f.VirtualDiskFactory(), slot=0)
    body = {"name": "wrong", "vm": vm.pk, "disks": [{"slot": other_slot.pk, "target_repository": target.pk}]}
    refused = api.post("/api/v1/clone-customizers/", body, format="json")
    assert refused.status_code == 400 and "disks" in refused.json()
    from ovmweb.inventory.models import CloneCustomizer

    assert not CloneCustomizer.objects.filter(name="wrong").exists()
