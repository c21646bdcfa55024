"""Every model's admin pages load; admin edits go through the services and their rules."""

import json

import pytest
from django.contrib import admin
from django.urls import reverse

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import MacAddressRange, Server, ServerPool, VirtualMachine
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def inventory(admin_user):
    """One row of (nearly) every model, so that every change page has something to show."""
    vm = f.VirtualMachineFactory()
    f.ServerFactory(server_pool=vm.server_pool)
    disk = f.VirtualDiskFactory(repository=vm.repository)
    f.VmDiskSlotFactory(vm=vm, virtual_disk=disk, slot=0)
    f.VnicFactory(vm=vm)
    f.NetworkFactory()
    f.IsoFileFactory(repository=vm.repository)
    f.CloneCustomizerFactory(vm=vm)
    f.AntiAffinityGroupFactory(server_pool=vm.server_pool)
    f.ProcessorCompatibilityGroupFactory()
    f.VirtualApplianceFactory(repository=vm.repository)
    MacAddressRange.objects.create(pk=1, start="00:21:f6:00:00:00", end="00:21:f6:ff:ff:ff")
    job = job_submit(operation="vm.start", summary="start", user=admin_user, target=vm, lock=[vm])
    event_record(obj=vm, type="test", text="hello", user=admin_user)
    from django.utils import timezone

    from ovmweb.consoles.models import ConsoleTicket

    ConsoleTicket.objects.create(token_hash="f" * 64, user=admin_user, vm=vm, kind="vnc", expires_at=timezone.now())
    return {"vm": vm, "job": job}


def _models():
    return sorted(admin.site._registry, key=lambda m: m._meta.label)


@pytest.mark.parametrize("model", _models(), ids=lambda m: m._meta.label)
def test_admin_pages_load(staff, inventory, model):
    opts = model._meta
    base = f"admin:{opts.app_label}_{opts.model_name}"
    assert staff.get(reverse(f"{base}_changelist")).status_code == 200
    assert staff.get(reverse(f"{base}_changelist") + "?q=x").status_code == 200
    add = staff.get(reverse(f"{base}_add"))
    model_admin = admin.site._registry[model]
    assert add.status_code == (200 if model_admin.has_add_permission(add.wsgi_request) else 403)
    obj = model._default_manager.first()
    if obj is not None:
        assert staff.get(reverse(f"{base}_change", args=[obj.pk])).status_code == 200


def test_every_inventory_and_jobs_model_is_registered():
    from django.apps import apps

    for label in ("inventory", "jobs", "consoles"):
        for model in apps.get_app_config(label).get_models():
            assert model in admin.site._registry, model


def test_console_ticket_hash_not_shown(staff, inventory):
    from ovmweb.consoles.models import ConsoleTicket

    ticket = ConsoleTicket.objects.get()
    page = staff.get(reverse("admin:consoles_consoleticket_change", args=[ticket.pk])).content.decode()
    assert "f" * 64 not in page
    assert "f" * 64 not in staff.get(reverse("admin:consoles_consoleticket_changelist")).content.decode()


def form_data(response) -> dict:
    """The POST body the admin page would send unchanged."""
    form = response.context["adminform"].form
    data = {}
    for name, field in form.fields.items():
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, (list, dict)) and field.__class__.__name__ == "JSONField":
            value = json.dumps(value)
        if isinstance(value, bool):
            if not value:
                continue
            value = "on"
        data[name] = value
    return data


def test_vm_admin_edit_rule_violation_is_a_form_error(staff):
    vm = f.VirtualMachineFactory(vcpus=1, max_vcpus=2, os_type="OL6")
    url = reverse("admin:inventory_virtualmachine_change", args=[vm.pk])
    data = form_data(staff.get(url))
    # PVM is refused for Oracle Linux 7 guests (seed 7.1): a rule of the service, not of the model.
    data.update(domain_type="PVM", os_type="OL7")
    response = staff.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "PVM" in str(errors), errors
    vm.refresh_from_db()
    assert (vm.domain_type, vm.os_type) == ("HVM", "OL6")


def test_vm_admin_edit_of_running_vm_is_pending(staff):
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory(), keymap="en-us")
    url = reverse("admin:inventory_virtualmachine_change", args=[vm.pk])
    data = form_data(staff.get(url))
    data["keymap"] = "fr"
    response = staff.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    vm.refresh_from_db()
    assert vm.keymap == "en-us" and vm.pending_changes == {"keymap": "fr"}
    assert Event.objects.filter(type="vm.config").exists()


def test_vm_admin_add_goes_through_vm_create(staff):
    pool = f.ServerPoolFactory()
    url = reverse("admin:inventory_virtualmachine_add")
    data = form_data(staff.get(url))
    data.update(
        name="from-admin",
        server_pool=pool.pk,
        domain_type="HVM",
        os_type="OL6",
        vcpus=1,
        max_vcpus=2,
        memory_mib=512,
        max_memory_mib=1024,
    )
    response = staff.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    vm = VirtualMachine.objects.get(name="from-admin")
    assert Event.objects.filter(type="vm.create", object_id=vm.pk).exists()


def test_pool_delete_refused_shows_message(staff):
    pool = f.ServerPoolFactory(name="busy-pool")
    f.ServerFactory(server_pool=pool)
    response = staff.post(reverse("admin:inventory_serverpool_delete", args=[pool.pk]), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert "busy-pool" in " ".join(str(m) for m in response.context["messages"])
    assert ServerPool.objects.filter(pk=pool.pk).exists()


def test_pool_admin_add_records_event(staff):
    response = staff.post(reverse("admin:inventory_serverpool_add"), {"name": "admin-pool", "architecture": "X86"})
    assert response.status_code == 302
    assert Event.objects.filter(type="pool.created").exists()


def test_mac_range_admin_refuses_reversed_range(staff):
    row = MacAddressRange.objects.create(pk=1, start="00:21:f6:00:00:00", end="00:21:f6:ff:ff:ff")
    url = reverse("admin:inventory_macaddressrange_change", args=[row.pk])
    response = staff.post(url, {"start": "00:21:f6:ff:00:00", "end": "00:21:f6:00:00:00"})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    row.refresh_from_db()
    assert row.start == "00:21:f6:00:00:00"


def test_vnic_admin_add_allocates_mac(staff):
    vm = f.VirtualMachineFactory()
    response = staff.post(reverse("admin:inventory_vnic_add"), {"vm": vm.pk, "model": "virtio", "mac": ""})
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert vm.vnics.get().mac.startswith("00:21:f6:")


def test_vnic_admin_add_to_suspended_vm_is_refused(staff):
    vm = f.VirtualMachineFactory(status=VmStatus.SUSPENDED, server=f.ServerFactory())
    response = staff.post(reverse("admin:inventory_vnic_add"), {"vm": vm.pk, "model": "virtio", "mac": ""})
    assert response.status_code == 200 and response.context["adminform"].form.errors
    assert not vm.vnics.exists()


def test_vm_admin_start_action(staff):
    stopped, running = (
        f.VirtualMachineFactory(),
        f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory()),
    )
    response = staff.post(
        reverse("admin:inventory_virtualmachine_changelist"),
        {"action": "start_vms", "_selected_action": [stopped.pk, running.pk]},
        follow=True,
    )
    assert response.status_code == 200
    texts = " ".join(str(m) for m in response.context["messages"])
    assert "RUNNING" in texts  # the refusal names the state
    stopped.refresh_from_db()
    assert stopped.status == VmStatus.STARTING


def test_job_abort_and_event_acknowledge_actions(staff, inventory):
    job = inventory["job"]
    staff.post(reverse("admin:jobs_job_changelist"), {"action": "abort_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.status == "ABORTED"
    event = Event.objects.filter(type="test").get()
    staff.post(reverse("admin:jobs_event_changelist"), {"action": "acknowledge_events", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert event.acknowledged


def test_job_admin_hides_params(staff, admin_user):
    job = job_submit(operation="server.discover", summary="discover", user=admin_user, params={"password": "s3cret-pw"})
    page = staff.get(reverse("admin:jobs_job_change", args=[job.pk])).content.decode()
    assert "s3cret-pw" not in page
    assert Job.objects.filter(pk=job.pk).exists()


def test_customizer_admin_edit_goes_through_customizer_update(staff):
    vm = f.VirtualMachineFactory()
    customizer = f.CloneCustomizerFactory(vm=vm, name="plan")
    f.CloneCustomizerFactory(vm=vm, name="taken")
    url = reverse("admin:inventory_clonecustomizer_change", args=[customizer.pk])
    response = staff.post(url, {"name": "plan-b", "description": "bigger array"})
    assert response.status_code == 302
    customizer.refresh_from_db()
    assert (customizer.name, customizer.description, customizer.vm_id) == ("plan-b", "bigger array", vm.pk)
    # Unique per VM: a form error, nothing written.
    refused = staff.post(url, {"name": "taken", "description": ""})
    assert refused.status_code == 200 and refused.context["adminform"].form.errors
    customizer.refresh_from_db()
    assert customizer.name == "plan-b"


def _crud_admins():
    from ovmweb.inventory.admin import CrudServiceAdmin

    return [
        (m, a)
        for m, a in sorted(admin.site._registry.items(), key=lambda i: i[0]._meta.label)
        if isinstance(a, CrudServiceAdmin)
    ]


@pytest.mark.parametrize(
    "model,model_admin", _crud_admins(), ids=lambda x: getattr(getattr(x, "_meta", None), "label", "")
)
def test_crud_service_admin_names_existing_services(model, model_admin):
    """The admin names its services by string: each named function exists and takes the
    object by the keyword the admin passes."""
    import inspect

    for verb in ("create", "update", "delete"):
        params = inspect.signature(model_admin._service_function(verb)).parameters
        assert "user" in params
        if verb != "create":
            assert model_admin.service_object in params, (model, verb)


def test_group_and_network_admins_add_change_delete_through_services(staff):
    cases = [
        (
            "processorcompatibilitygroup",
            {"name": "g1", "description": ""},
            {"name": "g2", "description": "x"},
            "compat",
        ),
        ("antiaffinitygroup", {"name": "a1", "server_pool": f.ServerPoolFactory().pk}, None, "aag"),
        (
            "network",
            {"name": "n1", "bridge": "br0", "libvirt_network": "", "vlan_id": "", "roles": "[]"},
            None,
            "network",
        ),
    ]
    for model_name, add_data, change_data, event in cases:
        response = staff.post(reverse(f"admin:inventory_{model_name}_add"), add_data)
        assert response.status_code == 302, response.context and response.context["adminform"].form.errors
        created = Event.objects.get(type=f"{event}.created")
        obj = admin.site._registry[next(m for m in admin.site._registry if m._meta.model_name == model_name)].model
        row = obj.objects.get(name=add_data["name"])
        if change_data is not None:
            response = staff.post(reverse(f"admin:inventory_{model_name}_change", args=[row.pk]), change_data)
            assert response.status_code == 302, response.context and response.context["adminform"].form.errors
            assert Event.objects.filter(type=f"{event}.updated", object_id=created.object_id).exists()
        response = staff.post(reverse(f"admin:inventory_{model_name}_delete", args=[row.pk]), {"post": "yes"})
        assert response.status_code == 302
        assert Event.objects.filter(type=f"{event}.deleted").exists()
        assert not obj.objects.filter(pk=row.pk).exists()


def test_server_admin_delete_queues_the_server_delete_job(staff):
    server = f.ServerFactory(name="hv-admin-del")
    url = reverse("admin:inventory_server_delete", args=[server.pk])
    assert staff.get(url).status_code == 200  # the confirmation page
    response = staff.post(url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    job = Job.objects.get(operation="server.delete")
    assert job.params == {"server_id": server.pk}
    assert f"Deletion of server hv-admin-del queued as job #{job.pk}." in " ".join(
        str(m) for m in response.context["messages"]
    )
    # Not a raw ORM delete: the row stays until the job has removed the key and files.
    assert Server.objects.filter(pk=server.pk).exists()


def test_server_admin_delete_refused_shows_message(staff):
    server = f.ServerFactory(name="hv-busy")
    f.VirtualMachineFactory(name="runs-here", server=server, server_pool=server.server_pool, status=VmStatus.RUNNING)
    response = staff.post(reverse("admin:inventory_server_delete", args=[server.pk]), {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert "runs-here" in " ".join(str(m) for m in response.context["messages"])
    assert Server.objects.filter(pk=server.pk).exists() and not Job.objects.exists()


def test_server_admin_bulk_delete_is_not_offered(staff):
    server = f.ServerFactory()
    staff.post(
        reverse("admin:inventory_server_changelist"),
        {"action": "delete_selected", "_selected_action": [server.pk], "post": "yes"},
    )
    assert Server.objects.filter(pk=server.pk).exists()  # the bulk delete would skip the job
