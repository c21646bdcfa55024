"""Every management page needs a session, renders, and reads through the selectors."""

import pytest
from django.urls import reverse

from ovmweb.inventory.choices import VmStatus
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

PAGES = [
    ("web:vm_list", {}),
    ("web:vm_create_start", {}),
    ("web:vm_toolbar", {}),
    ("web:server_list", {}),
    ("web:server_discover", {}),
    ("web:repository_list", {}),
    ("web:network_list", {}),
    ("web:job_list", {}),
    ("web:job_panel", {}),
    ("web:event_list", {}),
]
SOURCES = ["iso", "pvm_url", "template", "clone", "appliance"]


@pytest.mark.parametrize("name,kwargs", PAGES)
def test_pages_need_login(client, name, kwargs):
    response = client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("web:login"))


def test_object_pages_need_login(client):
    vm = VirtualMachineFactory()
    server = ServerFactory()
    repo = RepositoryFactory()
    for url in [
        f"/vms/{vm.pk}/edit/",
        f"/vms/{vm.pk}/detail/",
        f"/vms/{vm.pk}/row/",
        f"/servers/{server.pk}/",
        f"/repositories/{repo.pk}/",
        "/vms/new/iso/",
    ]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/")
    response = client.post(f"/vms/{vm.pk}/action/start/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    assert not Job.objects.exists()


@pytest.mark.parametrize("name,kwargs", PAGES)
def test_pages_render(admin_client, name, kwargs):
    VirtualMachineFactory(name="alpha")
    response = admin_client.get(reverse(name, kwargs=kwargs))
    assert response.status_code == 200


@pytest.mark.parametrize("source", SOURCES)
def test_create_wizard_pages_render(admin_client, source):
    response = admin_client.get(reverse("web:vm_create", args=[source]))
    assert response.status_code == 200
    assert b'id="vm-create-form"' in response.content


def test_unknown_source_is_404(admin_client):
    assert admin_client.get("/vms/new/floppy/").status_code == 404


def test_login_page_and_login(client, admin):
    response = client.get("/login/")
    assert response.status_code == 200 and b'name="password"' in response.content
    response = client.post("/login/", {"username": "ui-admin", "password": "pw-test-123"})
    assert response.status_code == 302
    assert client.get("/vms/").status_code == 200


def test_logout_ends_session(admin_client):
    response = admin_client.post("/logout/")
    assert response.status_code == 302
    assert admin_client.get("/vms/").status_code == 302


def test_home_redirects_to_vms(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/vms/"


def test_nav_tree_lists_pools_and_servers(admin_client):
    pool = ServerPoolFactory(name="prod-pool")
    ServerFactory(name="hv-01", server_pool=pool)
    ServerFactory(name="loner", server_pool=None)
    html = admin_client.get("/vms/").content.decode()
    assert "prod-pool" in html and "hv-01" in html
    assert "Unassigned servers" in html and "loner" in html


def test_vm_table_search_sort_and_paginate(admin_client):
    pool = ServerPoolFactory()
    for i in range(60):
        VirtualMachineFactory(name=f"web-{i:03d}", server_pool=pool, memory_mib=512 + i, max_memory_mib=1024)
    VirtualMachineFactory(name="db-primary", server_pool=pool)
    html = admin_client.get("/vms/").content.decode()
    assert "1–50 of 61" in html and "Page 1 of 2" in html
    html = admin_client.get("/vms/?q=primary").content.decode()
    assert "db-primary" in html and "web-000" not in html and "1–1 of 1" in html
    html = admin_client.get("/vms/?sort=-name").content.decode()
    assert html.index("web-059") < html.index("web-058")
    html = admin_client.get("/vms/?sort=-memory&per=25").content.decode()
    assert html.index("web-059") < html.index("web-000") if "web-000" in html else "web-059" in html
    html = admin_client.get("/vms/?page=2").content.decode()
    assert "web-059" in html and "web-000" not in html


def test_vm_table_partial_for_htmx(admin_client):
    VirtualMachineFactory(name="partial-vm")
    response = admin_client.get("/vms/?q=partial", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "partial-vm" in html
    assert "<html" not in html and 'class="grid vm-grid"' in html


def test_vm_table_filters_by_pool(admin_client):
    a, b = ServerPoolFactory(name="pool-a"), ServerPoolFactory(name="pool-b")
    VirtualMachineFactory(name="in-a", server_pool=a)
    VirtualMachineFactory(name="in-b", server_pool=b)
    html = admin_client.get(f"/vms/?pool={a.pk}").content.decode()
    assert "in-a" in html and "in-b" not in html


def test_vm_detail_shows_disks_vnics_ports_and_pending(admin_client):
    from ovmweb.inventory.models import VmDiskSlot, Vnic
    from tests.factories import VirtualDiskFactory

    vm = VirtualMachineFactory(name="detailed")
    disk = VirtualDiskFactory(name="root-disk")
    VmDiskSlot.objects.create(vm=vm, slot=0, virtual_disk=disk)
    net = NetworkFactory(name="vm-net")
    Vnic.objects.create(vm=vm, mac="52:54:00:aa:bb:cc", network=net)
    type(vm).objects.filter(pk=vm.pk).update(pending_changes={"memory_mib": 2048}, vnc_port=10003, serial_port=7903)
    html = admin_client.get(f"/vms/{vm.pk}/detail/").content.decode()
    for text in ("root-disk", "52:54:00:aa:bb:cc", "vm-net", "VNC 10003", "7903", "memory_mib", "2048"):
        assert text in html, text


@pytest.mark.parametrize(
    "status,enabled",
    [
        (VmStatus.STOPPED, {"start", "kill"}),
        (VmStatus.RUNNING, {"stop", "restart", "kill", "suspend"}),
        (VmStatus.SUSPENDED, {"resume", "kill"}),
        (VmStatus.STARTING, {"kill"}),
        (VmStatus.STOPPING, {"kill"}),
        (VmStatus.TEMPLATE, set()),
    ],
)
def test_toolbar_enables_exactly_the_table(admin_client, status, enabled):
    import re

    vm = VirtualMachineFactory(status=status)
    html = admin_client.get(f"/vms/toolbar/?vm={vm.pk}").content.decode()
    buttons = re.findall(r'<button type="submit" class="btn act-(\w+)" data-action="\w+" (disabled)?', html)
    assert {a for a, d in buttons if not d} == enabled
    assert {a for a, _ in buttons} == {"start", "stop", "restart", "kill", "suspend", "resume"}


def test_toolbar_console_buttons_only_for_active_vm(admin_client):
    server = ServerFactory()
    running = VirtualMachineFactory(status=VmStatus.RUNNING, server=server)
    stopped = VirtualMachineFactory(status=VmStatus.STOPPED)
    html = admin_client.get(f"/vms/toolbar/?vm={running.pk}").content.decode()
    assert f'href="/vms/{running.pk}/console/"' in html and f'href="/vms/{running.pk}/serial-console/"' in html
    html = admin_client.get(f"/vms/toolbar/?vm={stopped.pk}").content.decode()
    assert "/console/" not in html


def test_server_detail_shows_facts_and_vms(admin_client):
    server = ServerFactory(name="hv-facts", cpu_model_name="Xeon Test", cpu_cores=12)
    VirtualMachineFactory(name="guest-on-hv", server=server)
    html = admin_client.get(f"/servers/{server.pk}/").content.decode()
    assert "Xeon Test" in html and "12" in html and "guest-on-hv" in html


def test_repository_detail_tabs(admin_client):
    repo = RepositoryFactory(name="repo-x")
    IsoFileFactory(name="tiny.iso", repository=repo)
    VirtualMachineFactory(name="tmpl-1", repository=repo, status=VmStatus.TEMPLATE)
    assert "tiny.iso" in admin_client.get(f"/repositories/{repo.pk}/").content.decode()
    assert "tmpl-1" in admin_client.get(f"/repositories/{repo.pk}/?tab=templates").content.decode()
    html = admin_client.get(f"/repositories/{repo.pk}/?tab=disks").content.decode()
    assert "No virtual disks." in html


def test_jobs_and_events_pages(admin_client, admin):
    job = Job.objects.create(
        summary="Start vm-7", operation="vm.start", progress=40, status="RUNNING", user=admin, log="step one\nstep two"
    )
    Event.objects.create(type="vm.state", text="vm-7 is RUNNING", severity="WARNING", job=job, object_repr="vm-7")
    assert "Start vm-7" in admin_client.get("/jobs/").content.decode()
    html = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "step two" in html and 'aria-valuenow="40"' in html and "Abort" in html
    html = admin_client.get("/jobs/panel/").content.decode()
    assert "Start vm-7" in html
    html = admin_client.get("/events/?severity=WARNING").content.decode()
    assert "vm-7 is RUNNING" in html and "Acknowledge" in html
    assert "vm-7 is RUNNING" not in admin_client.get("/events/?severity=ERROR").content.decode()


def test_events_per_object(admin_client):
    from ovmweb.jobs.services import event_record

    vm = VirtualMachineFactory(name="evented")
    other = VirtualMachineFactory(name="quiet")
    event_record(obj=vm, type="vm.test", text="something about evented")
    event_record(obj=other, type="vm.test", text="something about quiet")
    html = admin_client.get(f"/events/?type=virtualmachine&id={vm.pk}").content.decode()
    assert "something about evented" in html and "something about quiet" not in html
    assert admin_client.get("/events/?type=virtualmachine&id=999999").status_code == 404
