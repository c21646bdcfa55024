"""The admin asks the same permission table as the other doors: a staff user's views,
adds and actions follow ovmweb.inventory.permissions, per row for the service actions."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.urls import reverse

from ovmweb.inventory.models import Server, VirtualMachine, Vnic
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


def staff_with(client, *codenames):
    user = f.UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return user


def test_aborting_someone_elses_job_from_the_admin_is_refused(client):
    owner = f.SuperUserFactory(username="owner")
    vm = f.VirtualMachineFactory()
    job = job_submit(operation="vm.start", summary="start", user=owner, target=vm, lock=[vm])
    staff_with(client, "view_job", "view_virtualmachine")
    url = reverse("admin:jobs_job_changelist")
    client.post(url, {"action": "abort_jobs", "_selected_action": [job.pk]})
    job.refresh_from_db()
    assert job.abort_requested is False and job.status == "QUEUED"


def test_acknowledging_needs_change_event(client):
    vm = f.VirtualMachineFactory()
    event = event_record(obj=vm, type="vm.test", text="x")
    staff_with(client, "view_event", "view_virtualmachine")
    client.post(
        reverse("admin:jobs_event_changelist"), {"action": "acknowledge_events", "_selected_action": [event.pk]}
    )
    event.refresh_from_db()
    assert event.acknowledged is False


def test_jobs_and_events_of_objects_the_user_may_not_see_are_not_listed(client):
    owner = f.SuperUserFactory(username="owner")
    server = f.ServerFactory(name="hidden-server")
    job_submit(operation="server.discover", summary="Discover hidden-server", user=owner, target=server)
    event_record(obj=server, type="server.test", text="about hidden-server")
    staff_with(client, "view_job", "view_event", "view_virtualmachine")
    for name in ("jobs_job", "jobs_event"):
        page = client.get(reverse(f"admin:{name}_changelist"))
        assert page.status_code == 200 and "hidden-server" not in page.content.decode(), name
    job = Job.objects.get()
    assert client.get(reverse("admin:jobs_job_change", args=[job.pk])).status_code in (302, 403, 404)


def test_a_vnic_needs_change_permission_on_its_vm(client):
    vm = f.VirtualMachineFactory()
    staff_with(client, "add_vnic", "view_vnic", "view_virtualmachine")
    assert client.get(reverse("admin:inventory_vnic_add")).status_code == 403
    client.post(reverse("admin:inventory_vnic_add"), {"vm": vm.pk})
    assert not Vnic.objects.exists()


def test_a_view_only_staff_user_starts_nothing(client):
    vm = f.VirtualMachineFactory()
    staff_with(client, "view_virtualmachine")
    client.post(
        reverse("admin:inventory_virtualmachine_changelist"), {"action": "start_vms", "_selected_action": [vm.pk]}
    )
    assert not Job.objects.exists()
    vm.refresh_from_db()
    assert vm.status == "STOPPED"


def test_every_admin_asks_the_permission_table():
    """No registered admin decides with Django's model permissions of its own."""
    from ovmweb.inventory.admin_access import AuthorizedAdmin

    for model, model_admin in admin.site._registry.items():
        if model._meta.app_label in ("inventory", "jobs", "consoles"):
            assert isinstance(model_admin, AuthorizedAdmin), model


def test_a_staff_user_without_permissions_sees_no_inventory(client):
    f.ServerFactory(name="hidden-server")
    f.VirtualMachineFactory(name="hidden-vm")
    staff_with(client)
    for model in (Server, VirtualMachine, Job, Event):
        opts = model._meta
        assert client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")).status_code == 403
