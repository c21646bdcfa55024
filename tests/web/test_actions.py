"""Writes from the UI go through the services; domain errors come back as
messages or field errors, never as a 500."""

import pytest
from django.contrib.messages import get_messages

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine, Vnic
from ovmweb.jobs.models import Event, Job
from tests.factories import (
    IsoFileFactory,
    NetworkFactory,
    RepositoryFactory,
    ServerFactory,
    ServerPoolFactory,
    VirtualMachineFactory,
)

pytestmark = pytest.mark.django_db


def texts(response):
    return [str(m) for m in get_messages(response.wsgi_request)]


def test_start_queues_job_and_sets_starting(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.STOPPED, name="to-start")
    response = admin_client.post(f"/vms/{vm.pk}/action/start/", {"next": "/vms/?q=to-start"})
    assert response.status_code == 302 and response["Location"] == "/vms/?q=to-start"
    vm.refresh_from_db()
    assert vm.status == VmStatus.STARTING
    job = Job.objects.get()
    assert job.operation == "vm.start" and job.target_id == vm.pk
    assert any(f"#{job.pk}" in t for t in texts(response))


def test_forbidden_action_is_a_message_not_an_error(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.STOPPED, name="already-off")
    response = admin_client.post(f"/vms/{vm.pk}/action/stop/", follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cannot stop virtual machine" in html and "STOPPED" in html
    assert not Job.objects.exists()
    vm.refresh_from_db()
    assert vm.status == VmStatus.STOPPED


def test_template_never_starts(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.TEMPLATE)
    response = admin_client.post(f"/vms/{vm.pk}/action/start/", follow=True)
    assert "TEMPLATE" in response.content.decode()
    assert not Job.objects.exists()


def test_unknown_action_is_404_and_get_is_refused(admin_client):
    vm = VirtualMachineFactory()
    assert admin_client.post(f"/vms/{vm.pk}/action/explode/").status_code == 404
    assert admin_client.get(f"/vms/{vm.pk}/action/start/").status_code == 405


def test_second_conflicting_action_names_the_holder(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.RUNNING, server=ServerFactory())
    admin_client.post(f"/vms/{vm.pk}/action/stop/")
    response = admin_client.post(f"/vms/{vm.pk}/action/kill/", follow=True)
    assert response.status_code == 200
    job = Job.objects.get(operation="vm.stop")
    msgs = " ".join(texts(response)) + response.content.decode()
    assert f"{job.pk}" in msgs


def test_user_without_permission_cannot_act(client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(username="viewer"))
    vm = VirtualMachineFactory(status=VmStatus.STOPPED)
    response = client.post(f"/vms/{vm.pk}/action/start/")
    assert response.status_code == 403
    assert not Job.objects.exists()


def _iso_setup():
    pool = ServerPoolFactory()
    repo = RepositoryFactory(server_pools=[pool])
    iso = IsoFileFactory(repository=repo, name="tiny.iso")
    return pool, repo, iso


def test_create_vm_from_iso(admin_client):
    pool, repo, iso = _iso_setup()
    net = NetworkFactory(server_pools=[pool])
    data = {
        "name": "from-iso",
        "iso": iso.pk,
        "domain_type": "HVM",
        "os_type": "OTHER_LINUX",
        "server_pool": pool.pk,
        "repository": repo.pk,
        "vcpus": 1,
        "max_vcpus": 2,
        "memory_mib": 256,
        "max_memory_mib": 512,
        "networks": [net.pk],
        "boot_1": "cdrom",
        "boot_2": "disk",
    }
    response = admin_client.post("/vms/new/iso/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    vm = VirtualMachine.objects.get(name="from-iso")
    assert vm.max_vcpus == 2 and vm.boot_order == ["cdrom", "disk"]
    assert vm.disk_slots.get().iso == iso
    assert vm.vnics.get().network == net


def test_create_vm_field_errors_next_to_fields(admin_client):
    pool, repo, iso = _iso_setup()
    data = {
        "name": "too-many-cpus",
        "iso": iso.pk,
        "domain_type": "HVM",
        "os_type": "OTHER_LINUX",
        "server_pool": pool.pk,
        "repository": repo.pk,
        "vcpus": 4,
        "max_vcpus": 2,
        "memory_mib": 256,
        "max_memory_mib": 512,
    }
    response = admin_client.post("/vms/new/iso/", data)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_vcpus_error"' in html and "exceed the maximum" in html
    assert not VirtualMachine.objects.filter(name="too-many-cpus").exists()


def test_create_vm_form_errors_for_missing_fields(admin_client):
    response = admin_client.post("/vms/new/pvm_url/", {"domain_type": "PVM"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="id_name_error"' in html and 'id="id_url_error"' in html


def test_create_pvm_bad_url_error_on_url_field(admin_client):
    pool = ServerPoolFactory()
    data = {
        "name": "pvm-1",
        "url": "file:///etc/passwd",
        "domain_type": "PVM",
        "os_type": "OL6",
        "server_pool": pool.pk,
        "vcpus": 1,
        "max_vcpus": 1,
        "memory_mib": 256,
        "max_memory_mib": 256,
    }
    response = admin_client.post("/vms/new/pvm_url/", data)
    assert response.status_code == 200
    assert 'id="id_url_error"' in response.content.decode()
    assert not VirtualMachine.objects.filter(name="pvm-1").exists()


def test_iso_source_offers_no_pvm(admin_client):
    html = admin_client.get("/vms/new/iso/").content.decode()
    assert 'value="HVM"' in html and 'value="PVM"' not in html
    html = admin_client.get("/vms/new/pvm_url/").content.decode()
    assert 'value="PVM"' in html and 'value="HVM"' not in html


def _edit_data(vm, **over):
    data = {
        "name": vm.name,
        "description": vm.description,
        "os_type": vm.os_type,
        "guest_kernel": vm.guest_kernel,
        "vcpus": vm.vcpus,
        "max_vcpus": vm.max_vcpus,
        "memory_mib": vm.memory_mib,
        "max_memory_mib": vm.max_memory_mib,
        "keymap": vm.keymap,
        "mouse_device": vm.mouse_device,
        "cpu_pinning": vm.cpu_pinning,
    }
    for i, dev in enumerate(vm.boot_order[:3]):
        data[f"boot_{i + 1}"] = dev
    data.update(over)
    return {k: v for k, v in data.items() if v is not None}


def test_edit_stopped_vm_applies_at_once(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.STOPPED, memory_mib=512, max_memory_mib=1024)
    response = admin_client.post(f"/vms/{vm.pk}/edit/", _edit_data(vm, memory_mib=768))
    assert response.status_code == 302
    vm.refresh_from_db()
    assert vm.memory_mib == 768 and not vm.pending_changes


def test_edit_running_vm_shows_pending_change(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.RUNNING, server=ServerFactory(), keymap="en-us")
    response = admin_client.post(f"/vms/{vm.pk}/edit/", _edit_data(vm, keymap="de"), follow=True)
    assert response.status_code == 200
    vm.refresh_from_db()
    assert vm.keymap == "en-us" and vm.pending_changes.get("keymap") == "de"
    html = response.content.decode()
    assert "pending until" in html
    assert 'id="pending-changes"' in html and "At next start" in html and "<strong>de</strong>" in html


def test_edit_error_next_to_field(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.STOPPED, vcpus=1, max_vcpus=2)
    response = admin_client.post(f"/vms/{vm.pk}/edit/", _edit_data(vm, vcpus=8))
    assert response.status_code == 200
    assert 'id="id_vcpus_error"' in response.content.decode()


def test_vnic_add_and_remove(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.STOPPED)
    net = NetworkFactory()
    admin_client.post(f"/vms/{vm.pk}/vnics/add/", {"network": net.pk, "model": "virtio"})
    vnic = Vnic.objects.get(vm=vm)
    assert vnic.mac.startswith("00:21:f6:")
    admin_client.post(f"/vnics/{vnic.pk}/delete/")
    assert not Vnic.objects.filter(vm=vm).exists()


def test_vnic_add_refused_for_suspended_vm(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.SUSPENDED, server=ServerFactory())
    response = admin_client.post(f"/vms/{vm.pk}/vnics/add/", {"model": "virtio"}, follow=True)
    assert response.status_code == 200
    assert not Vnic.objects.filter(vm=vm).exists()
    assert any("SUSPENDED" in t or "suspended" in t for t in texts(response)) or "uspended" in response.content.decode()


def test_mac_range_form(admin_client):
    from ovmweb.inventory.models import MacAddressRange

    response = admin_client.post(
        "/networks/", {"form": "mac", "start": "00:21:f6:10:00:00", "end": "00:21:f6:10:00:ff"}
    )
    assert response.status_code == 302
    assert MacAddressRange.objects.get(pk=1).end == "00:21:f6:10:00:ff"
    response = admin_client.post(
        "/networks/", {"form": "mac", "start": "00:21:f6:10:00:ff", "end": "00:21:f6:10:00:00"}
    )
    assert response.status_code == 200 and "has-error" in response.content.decode()
    assert MacAddressRange.objects.get(pk=1).start == "00:21:f6:10:00:00"


def test_job_abort_and_event_acknowledge(admin_client, admin):
    from ovmweb.jobs.services import event_record

    job = Job.objects.create(summary="Long job", operation="vm.start", status="RUNNING")
    admin_client.post(f"/jobs/{job.pk}/abort/")
    job.refresh_from_db()
    assert job.abort_requested
    vm = VirtualMachineFactory()
    event = event_record(obj=vm, type="vm.test", text="look at me", severity="ERROR")
    admin_client.post(f"/events/{event.pk}/acknowledge/")
    event.refresh_from_db()
    assert event.acknowledged and event.acknowledged_by == admin


def test_delete_only_offered_and_done_through_service(admin_client):
    vm = VirtualMachineFactory(status=VmStatus.RUNNING, server=ServerFactory())
    response = admin_client.post(f"/vms/{vm.pk}/delete/", follow=True)
    assert response.status_code == 200
    assert VirtualMachine.objects.filter(pk=vm.pk).exists()
    stopped = VirtualMachineFactory(status=VmStatus.STOPPED)
    response = admin_client.post(f"/vms/{stopped.pk}/delete/")
    assert response.status_code == 302
    assert Job.objects.filter(operation="vm.delete", target_id=stopped.pk).exists()


def test_inbound_lock_toggle_and_discover_use_server_services(admin_client):
    server = ServerFactory(inbound_migration_lock=False)
    admin_client.post(f"/servers/{server.pk}/inbound-lock/", {"locked": "1"})
    server.refresh_from_db()
    assert server.inbound_migration_lock is True
    assert Event.objects.exists()


def test_disk_attach_and_detach_through_service(admin_client):
    from tests.factories import VirtualDiskFactory

    pool = ServerPoolFactory()
    repo = RepositoryFactory(server_pools=[pool])
    vm = VirtualMachineFactory(status=VmStatus.STOPPED, server_pool=pool, repository=repo)
    disk = VirtualDiskFactory(repository=repo, name="data-1")
    response = admin_client.post(f"/vms/{vm.pk}/disks/attach/", {"virtual_disk": disk.pk}, follow=True)
    assert response.status_code == 200
    slot = vm.disk_slots.get()
    assert slot.virtual_disk == disk
    assert "data-1" in response.content.decode()
    admin_client.post(f"/disk-slots/{slot.pk}/detach/")
    assert not vm.disk_slots.exists()


def test_disk_attach_refused_for_suspended_vm(admin_client):
    from tests.factories import VirtualDiskFactory

    pool = ServerPoolFactory()
    repo = RepositoryFactory(server_pools=[pool])
    vm = VirtualMachineFactory(
        status=VmStatus.SUSPENDED, server=ServerFactory(server_pool=pool), server_pool=pool, repository=repo
    )
    disk = VirtualDiskFactory(repository=repo)
    response = admin_client.post(f"/vms/{vm.pk}/disks/attach/", {"virtual_disk": disk.pk}, follow=True)
    assert response.status_code == 200
    assert not vm.disk_slots.exists()
    assert 'class="msg msg-error"' in response.content.decode()


def test_migrate_without_eligible_server_is_a_form_error(admin_client):
    pool = ServerPoolFactory()
    vm = VirtualMachineFactory(status=VmStatus.RUNNING, server=ServerFactory(server_pool=pool), server_pool=pool)
    response = admin_client.post(f"/vms/{vm.pk}/migrate/", {})
    assert response.status_code == 200
    assert 'class="msg msg-error"' in response.content.decode()
    assert not Job.objects.filter(operation="vm.migrate").exists()


def test_iso_upload_answers_json_for_xhr(admin_client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    repo = RepositoryFactory()
    bad = SimpleUploadedFile("notes.iso", b"whatever")
    response = admin_client.post(
        f"/repositories/{repo.pk}/isos/upload/", {"file": bad, "name": ".hidden.iso"}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 400
    assert response.json()["ok"] is False and response.json()["errors"]["name"]
    assert not Job.objects.exists()
    iso = SimpleUploadedFile("boot.iso", b"\0" * 0x8001 + b"CD001" + b"\0" * 100)
    response = admin_client.post(f"/repositories/{repo.pk}/isos/upload/", {"file": iso}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.target_id == repo.pk and "boot.iso" in job.summary


def test_discover_form_errors_and_local_without_ssh_fields(admin_client):
    response = admin_client.post(
        "/servers/discover/", {"hostname": "hv9.example.com", "transport": "ssh", "password": "secret"}
    )
    assert response.status_code == 200
    assert 'id="id_host_key_fingerprint_error"' in response.content.decode()
    assert not Job.objects.exists()
    response = admin_client.post("/servers/discover/", {"hostname": "localhost", "transport": "local", "name": "me"})
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.operation == "server.discover"
