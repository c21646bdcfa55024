"""The attacks the review found, performed through the pages: each answered 2xx/3xx and did
its harm before every door asked ovmweb.inventory.permissions."""

import pytest
from django.contrib.auth.models import Permission

from ovmweb.inventory.models import VirtualMachine
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.services import event_record, job_submit
from tests import factories as f

pytestmark = pytest.mark.django_db


def user_with(*codenames):
    user = f.UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def owner():
    return f.SuperUserFactory(username="owner")


@pytest.fixture
def pool():
    return f.ServerPoolFactory()


def test_creating_a_vm_needs_add_permission(client, pool):
    iso = f.IsoFileFactory(repository=f.RepositoryFactory(server_pools=[pool]))
    client.force_login(user_with("view_virtualmachine", "view_isofile"))
    body = {
        "name": "sneaky",
        "server_pool": pool.pk,
        "repository": iso.repository.pk,
        "domain_type": "HVM",
        "os_type": "OL6",
        "vcpus": 1,
        "max_vcpus": 1,
        "memory_mib": 512,
        "max_memory_mib": 512,
        "iso": iso.pk,
    }
    assert client.get("/vms/new/").status_code == 403
    assert client.get("/vms/new/iso/").status_code == 403
    assert client.post("/vms/new/iso/", body).status_code == 403
    assert not VirtualMachine.objects.filter(name="sneaky").exists()


def test_creating_a_vm_from_a_template_needs_view_permission_on_it(client, pool):
    template = f.VirtualMachineFactory(name="secret-template", status="TEMPLATE", server_pool=pool)
    client.force_login(user_with("add_virtualmachine"))
    body = {
        "name": "copy",
        "server_pool": pool.pk,
        "domain_type": template.domain_type,
        "os_type": template.os_type,
        "vcpus": 1,
        "max_vcpus": 1,
        "memory_mib": 512,
        "max_memory_mib": 512,
        "template": template.pk,
        "boot_1": "disk",
    }
    assert client.post("/vms/new/template/", body).status_code == 403
    assert not VirtualMachine.objects.filter(name="copy").exists()
    assert not Job.objects.exists()
    # Control: the same request by a user who may see the template gets past the check.
    client.force_login(user_with("add_virtualmachine", "view_virtualmachine"))
    assert client.post("/vms/new/template/", body).status_code in (200, 302)


def test_deleting_a_vm_needs_delete_permission(client):
    vm = f.VirtualMachineFactory()
    client.force_login(user_with("view_virtualmachine", "change_virtualmachine"))
    assert client.post(f"/vms/{vm.pk}/delete/").status_code == 403
    assert not Job.objects.exists()


def test_aborting_someone_elses_job_is_refused(client, owner):
    vm = f.VirtualMachineFactory()
    job = job_submit(operation="vm.start", summary="start", user=owner, target=vm, lock=[vm])
    client.force_login(user_with("view_job", "view_virtualmachine"))
    assert client.post(f"/jobs/{job.pk}/abort/").status_code == 403
    job.refresh_from_db()
    assert job.abort_requested is False and job.status == "QUEUED"


def test_the_owner_of_a_job_may_abort_it(client):
    vm = f.VirtualMachineFactory()
    mine = user_with("view_job", "view_virtualmachine")
    job = job_submit(operation="vm.start", summary="start", user=mine, target=vm, lock=[vm])
    client.force_login(mine)
    assert client.post(f"/jobs/{job.pk}/abort/").status_code == 302
    job.refresh_from_db()
    assert job.status == "ABORTED"


def test_acknowledging_events_needs_change_event(client):
    vm = f.VirtualMachineFactory()
    event = event_record(obj=vm, type="vm.test", text="something happened")
    client.force_login(user_with("view_event", "view_virtualmachine"))
    assert client.post(f"/events/{event.pk}/acknowledge/").status_code == 403
    event.refresh_from_db()
    assert event.acknowledged is False


def test_job_and_event_lists_show_only_objects_the_user_may_view(client, owner):
    server = f.ServerFactory(name="hidden-server")
    vm = f.VirtualMachineFactory(name="visible-vm")
    job_submit(operation="server.discover", summary="Discover hidden-server", user=owner, target=server)
    job_submit(operation="vm.start", summary="Start visible-vm", user=owner, target=vm, lock=[vm])
    event_record(obj=server, type="server.test", text="about hidden-server")
    event_record(obj=vm, type="vm.test", text="about visible-vm")
    client.force_login(user_with("view_job", "view_event", "view_virtualmachine"))
    for url in ("/jobs/", "/jobs/panel/", "/events/", f"/vms/{vm.pk}/detail/"):
        page = client.get(url).content.decode()
        assert "hidden-server" not in page, url
    assert "Start visible-vm" in client.get("/jobs/").content.decode()
    assert "about visible-vm" in client.get("/events/").content.decode()
    server_job = Job.objects.get(operation="server.discover")
    assert client.get(f"/jobs/{server_job.pk}/").status_code == 404
    assert client.get(f"/events/?type=server&id={server.pk}").status_code == 404
    hidden = Event.objects.get(type="server.test")
    assert client.post(f"/events/{hidden.pk}/acknowledge/").status_code in (403, 404)


def test_lists_need_their_view_permission(client, owner):
    job_submit(operation="vm.start", summary="x", user=owner)
    client.force_login(f.UserFactory())
    for url in ("/vms/", "/vms/toolbar/", "/jobs/", "/jobs/panel/", "/events/"):
        assert client.get(url).status_code == 403, url


def test_a_repository_page_shows_only_what_the_user_may_view(client):
    repo = f.RepositoryFactory()
    f.VirtualMachineFactory(name="private-vm", repository=repo)
    f.IsoFileFactory(name="private.iso", repository=repo)
    client.force_login(user_with("view_repository"))
    page = client.get(f"/repositories/{repo.pk}/").content.decode()
    assert "private-vm" not in page and "private.iso" not in page
    assert client.post(f"/repositories/{repo.pk}/").status_code == 405


def test_adding_a_vnic_needs_vnic_permission_too(client):
    vm = f.VirtualMachineFactory()
    network = f.NetworkFactory()
    client.force_login(user_with("view_virtualmachine", "change_virtualmachine"))
    assert client.post(f"/vms/{vm.pk}/vnics/add/", {"network": network.pk}).status_code == 403
    assert not vm.vnics.exists()


def test_rediscovering_from_the_page_needs_the_checkbox(client):
    server = f.ServerFactory(hostname="known.example.com", ssh_port=22, name="known")
    client.force_login(user_with("add_server", "change_server", "view_server"))
    body = {
        "hostname": "known.example.com",
        "transport": "ssh",
        "ssh_port": 22,
        "ssh_user": "evil",
        "password": "x",
        "host_key_fingerprint": "SHA256:" + "B" * 43,
    }
    page = client.post("/servers/discover/", body)
    assert page.status_code == 200 and "rediscover" in page.content.decode().lower()
    server.refresh_from_db()
    assert server.ssh_user == "root" and server.host_key_fingerprint == "SHA256:" + "A" * 43
    assert not Job.objects.exists()
    # Ticked, by a user who may only add servers: refused.
    adder = user_with("add_server", "view_server")
    client.force_login(adder)
    assert client.post("/servers/discover/", {**body, "rediscover": "on"}).status_code == 403
    assert not Job.objects.exists()


def test_the_vm_list_names_no_pool_or_server_the_user_may_not_see(client):
    server = f.ServerFactory(name="hidden-server", server_pool=f.ServerPoolFactory(name="hidden-pool"))
    client.force_login(user_with("view_virtualmachine"))
    for query in (f"pool={server.server_pool_id}", f"server={server.pk}"):
        page = client.get(f"/vms/?{query}").content.decode()
        assert "hidden-pool" not in page and "hidden-server" not in page, query
