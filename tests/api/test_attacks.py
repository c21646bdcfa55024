"""The attacks the review found, performed through the REST API."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from ovmweb.inventory.models import CloneCustomizer, VirtualMachine, Vnic
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


def client_with(*codenames):
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = APIClient()
    client.force_authenticate(user)
    return client, user


def _vm_body(pool, **source):
    return {
        "name": "copy",
        "server_pool": pool.pk,
        "domain_type": "HVM",
        "os_type": "OL6",
        "source": source,
    }


def test_a_vm_from_a_template_the_user_may_not_see_is_refused():
    pool = f.ServerPoolFactory()
    template = f.VirtualMachineFactory(name="secret", status="TEMPLATE", server_pool=pool)
    client, _user = client_with("add_virtualmachine")
    response = client.post("/api/v1/vms/", _vm_body(pool, kind="template", template=template.pk), format="json")
    assert response.status_code == 403
    assert not VirtualMachine.objects.filter(name="copy").exists() and not Job.objects.exists()
    # Control: who may see the template gets past the check.
    client, _user = client_with("add_virtualmachine", "view_virtualmachine")
    response = client.post("/api/v1/vms/", _vm_body(pool, kind="template", template=template.pk), format="json")
    assert response.status_code == 201, response.content


def test_a_vm_from_an_iso_the_user_may_not_see_is_refused():
    pool = f.ServerPoolFactory()
    iso = f.IsoFileFactory(repository=f.RepositoryFactory(server_pools=[pool]))
    client, _user = client_with("add_virtualmachine")
    body = {**_vm_body(pool, kind="iso", iso=iso.pk), "repository": iso.repository.pk}
    assert client.post("/api/v1/vms/", body, format="json").status_code == 403
    assert not VirtualMachine.objects.filter(name="copy").exists()


def test_cloning_is_creating_a_vm():
    vm = f.VirtualMachineFactory()
    client, _user = client_with("view_virtualmachine", "change_virtualmachine")
    assert client.post(f"/api/v1/vms/{vm.pk}/clone/", {"name": "c"}, format="json").status_code == 403
    assert client.post(f"/api/v1/vms/{vm.pk}/backup/", {}, format="json").status_code == 403
    assert not Job.objects.exists()


def test_a_customizer_needs_change_permission_on_its_vm():
    vm = f.VirtualMachineFactory()
    client, _user = client_with("add_clonecustomizer", "view_virtualmachine")
    response = client.post("/api/v1/clone-customizers/", {"name": "c", "vm": vm.pk}, format="json")
    assert response.status_code == 403
    assert not CloneCustomizer.objects.exists()


def test_a_vnic_needs_change_permission_on_its_vm():
    vm = f.VirtualMachineFactory()
    client, _user = client_with("add_vnic")
    assert client.post("/api/v1/vnics/", {"vm": vm.pk}, format="json").status_code == 403
    assert not Vnic.objects.exists()


def test_jobs_and_events_of_objects_the_user_may_not_see_are_hidden():
    owner = f.SuperUserFactory(username="owner")
    server = f.ServerFactory(name="hidden-server")
    vm = f.VirtualMachineFactory()
    hidden = job_submit(operation="server.discover", summary="Discover hidden-server", user=owner, target=server)
    shown = job_submit(operation="vm.start", summary="start", user=owner, target=vm, lock=[vm])
    hidden_event = event_record(obj=server, type="server.test", text="about hidden-server")
    event_record(obj=vm, type="vm.test", text="about the vm")
    client, _user = client_with("view_job", "view_event", "view_virtualmachine")
    assert [j["id"] for j in client.get("/api/v1/jobs/").json()["results"]] == [shown.pk]
    assert "hidden-server" not in client.get("/api/v1/events/").content.decode()
    assert client.get(f"/api/v1/jobs/{hidden.pk}/").status_code in (403, 404)
    assert client.get(f"/api/v1/events/{hidden_event.pk}/").status_code in (403, 404)


def test_aborting_someone_elses_job_and_acknowledging_without_change_event():
    owner = f.SuperUserFactory(username="owner")
    vm = f.VirtualMachineFactory()
    job = job_submit(operation="vm.start", summary="start", user=owner, target=vm, lock=[vm])
    event = event_record(obj=vm, type="vm.test", text="x")
    client, _user = client_with("view_job", "view_event", "view_virtualmachine")
    assert client.post(f"/api/v1/jobs/{job.pk}/abort/", {}, format="json").status_code == 403
    assert client.post(f"/api/v1/events/{event.pk}/acknowledge/", {}, format="json").status_code == 403
    job.refresh_from_db()
    event.refresh_from_db()
    assert job.abort_requested is False and event.acknowledged is False


def test_the_mac_range_is_not_shown_to_everyone():
    client, _user = client_with()
    assert client.get("/api/v1/mac-range/").status_code == 403
