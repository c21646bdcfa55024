"""Virtual appliances in the UI: import (OVA upload with progress, or URL) on the repository
page, appliance VMs in its contents, and the Create VM wizard from an appliance VM — end to
end against this machine's libvirtd."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ovmweb.inventory.models import VirtualAppliance, VirtualMachine
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f
from tests.inventory.conftest import real_estate, user  # noqa: F401  (fixtures: this machine's libvirtd)
from tests.inventory.test_appliances import make_ova, ovf_xml, qcow2

pytestmark = pytest.mark.django_db


def test_import_form_validates_and_answers_json(admin_client):
    repo = f.RepositoryFactory()
    url = f"/repositories/{repo.pk}/appliances/import/"
    response = admin_client.post(url, {}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "one of them" in str(response.json()["errors"])
    response = admin_client.post(url, {"file": SimpleUploadedFile("a.ovf", b"<x/>")}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400 and "OVA" in str(response.json()["errors"])
    response = admin_client.post(url, {"url": "https://example.com/apps/web.ova"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200 and response.json()["ok"]
    job = Job.objects.get(pk=response.json()["job"])
    assert job.operation == "appliance.import" and job.params["name"] == "web"
    page = admin_client.get(f"/repositories/{repo.pk}/?tab=appliances").content.decode()
    assert 'id="appliance-import-form"' in page and "data-upload" in page


def test_wizard_prefills_from_the_appliance_vm(admin_client):
    repo = f.RepositoryFactory()
    appliance = VirtualAppliance.objects.create(name="suite", repository=repo)
    avm = appliance.vms.create(name="db", vcpus=2, memory_mib=768, os_type="OL7")
    page = admin_client.get(f"/repositories/{repo.pk}/?tab=appliances").content.decode()
    assert f"/vms/new/appliance/?appliance_vm={avm.pk}" in page and "768.0 MiB" in page
    page = admin_client.get(f"/vms/new/appliance/?appliance_vm={avm.pk}").content.decode()
    assert 'name="vcpus" value="2"' in page and 'name="memory_mib" value="768"' in page
    assert f'<option value="{avm.pk}" selected>' in page


@pytest.mark.integration
def test_import_ova_then_create_vm_from_it_through_the_pages(real_estate, tmp_path, client):  # noqa: F811 (the imported fixture)
    e = real_estate
    client.force_login(e["user"])
    ova = make_ova(
        tmp_path / "tiny.ova",
        ovf_xml(systems=[("tiny", 1, 256, "Other Linux", ["d1"])]),
        {"disk1.qcow2": qcow2(tmp_path / "disk1.qcow2")},
    )
    with open(ova, "rb") as fh:
        response = client.post(
            f"/repositories/{e['repo'].pk}/appliances/import/", {"file": fh}, HTTP_ACCEPT="application/json"
        )
    assert response.json()["ok"], response.content
    run_pending_jobs()
    assert Job.objects.get(operation="appliance.import").status == JobStatus.SUCCESS
    avm = VirtualAppliance.objects.get(name="tiny").vms.get()
    page = client.get(f"/repositories/{e['repo'].pk}/?tab=appliances").content.decode()
    assert "tiny" in page and "Create VM" in page
    response = client.post(
        "/vms/new/appliance/",
        {
            "appliance_vm": avm.pk,
            "name": "from-ova",
            "domain_type": "HVM",
            "os_type": "OTHER_LINUX",
            "server_pool": e["pool"].pk,
            "vcpus": 1,
            "max_vcpus": 1,
            "memory_mib": 256,
            "max_memory_mib": 256,
            "boot_1": "disk",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    run_pending_jobs()
    deploy = Job.objects.get(operation="appliance.deploy")
    assert deploy.status == JobStatus.SUCCESS, deploy.error
    vm = VirtualMachine.objects.get(name="from-ova")
    disk = vm.disk_slots.get(slot=0).virtual_disk
    assert disk.repository == e["repo"] and not disk.appliance_vms.exists()
    assert (Path(e["repo"].path) / "VirtualDisks" / disk.volume).is_file()


def test_delete_button_queues_the_deletion_and_shows_refusals(admin_client):
    repo = f.RepositoryFactory()
    appliance = VirtualAppliance.objects.create(name="suite", repository=repo)
    appliance.vms.create(name="db")
    bare = VirtualAppliance.objects.create(name="bare", repository=repo)  # no VMs: still deletable
    page = admin_client.get(f"/repositories/{repo.pk}/?tab=appliances").content.decode()
    for a in (appliance, bare):
        assert f'action="/appliances/{a.pk}/delete/"' in page
    # The upload panels keep their forms and CSRF tokens (one include serves both).
    form = page.split('id="appliance-import-form"')[1].split("</form>")[0]
    assert "csrfmiddlewaretoken" in form and 'name="url"' in form and 'name="file"' in form
    iso_page = admin_client.get(f"/repositories/{repo.pk}/?tab=isos").content.decode()
    assert "csrfmiddlewaretoken" in iso_page.split('id="iso-upload-form"')[1].split("</form>")[0]

    Job.objects.create(
        operation="appliance.deploy", summary="deploy", status="RUNNING", params={"appliance_id": appliance.pk}
    )
    response = admin_client.post(f"/appliances/{appliance.pk}/delete/", follow=True)
    assert "is in use by job" in response.content.decode()
    assert not Job.objects.filter(operation="appliance.delete").exists()
    response = admin_client.post(f"/appliances/{bare.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == f"/repositories/{repo.pk}/?tab=appliances"
    job = Job.objects.get(operation="appliance.delete")
    assert job.target_id == bare.pk
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCESS, job.error
    assert list(VirtualAppliance.objects.values_list("name", flat=True)) == ["suite"]


def test_delete_needs_the_delete_permission(client):
    from django.contrib.auth.models import Permission

    appliance = VirtualAppliance.objects.create(name="suite", repository=f.RepositoryFactory())
    viewer = f.UserFactory()
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_repository", "view_virtualappliance"]))
    client.force_login(viewer)
    assert client.post(f"/appliances/{appliance.pk}/delete/").status_code == 403
    assert client.get(f"/appliances/{appliance.pk}/delete/").status_code == 403
    viewer.user_permissions.add(Permission.objects.get(codename="delete_virtualappliance"))
    assert client.get(f"/appliances/{appliance.pk}/delete/").status_code == 405
    assert client.post(f"/appliances/{appliance.pk}/delete/").status_code == 302
    assert Job.objects.filter(operation="appliance.delete", target_id=appliance.pk).exists()
