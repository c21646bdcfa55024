"""Virtual appliances through the API: OVA upload (multipart) and URL import answer 202
with the import job; bad input is 400 and writes nothing; list and detail show the
appliance's VMs. The integration test imports a real OVA into a real repository through
the API and creates a VM from it."""

import io
import json
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ovmweb.inventory.models import VirtualAppliance, VirtualApplianceVm, VirtualDisk
from ovmweb.inventory.services import appliances as appliances_service
from ovmweb.inventory.services.appliances import staging_dir
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs
from tests import factories as f
from tests.inventory.conftest import real_estate, user  # noqa: F401  (fixtures: this machine's libvirtd)
from tests.inventory.test_appliances import make_ova, ovf_xml

pytestmark = pytest.mark.django_db


def ova_bytes() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = ovf_xml().encode()
        info = tarfile.TarInfo("appliance.ovf")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def upload(api, **fields):
    return api.post("/api/v1/virtual-appliances/", fields, format="multipart")


def staged_files() -> set:
    return set(staging_dir().iterdir())


def test_upload_answers_202_with_the_import_job(api, repo):
    before = staged_files()
    blob = ova_bytes()
    response = upload(api, repository=repo.pk, file=SimpleUploadedFile("web-app.ova", blob))
    assert response.status_code == 202, response.json()
    job = response.json()
    assert job["operation"] == "appliance.import" and job["status"] == "QUEUED"
    assert job["target_type"] == "inventory.repository" and job["target_id"] == repo.pk
    params = Job.objects.get(pk=job["id"]).params
    # The name defaults to the file's; the upload is staged for the job, byte for byte.
    assert params["name"] == "web-app"
    (staged,) = staged_files() - before
    assert str(staged) == params["staged"] and staged.read_bytes() == blob
    assert not VirtualAppliance.objects.exists()


def test_upload_with_a_name(api, repo):
    response = upload(api, repository=repo.pk, name="named", file=SimpleUploadedFile("x.ova", ova_bytes()))
    assert response.status_code == 202, response.json()
    assert Job.objects.get(pk=response.json()["id"]).params["name"] == "named"


@pytest.mark.parametrize(
    "fields,field",
    [
        ({"file": "ovf"}, "file"),  # a bare .ovf cannot be uploaded
        ({"repository": None}, "repository"),
        ({"repository": 999999}, "repository"),
        ({"file": None}, "file"),
        ({"name": "x" * 256}, "name"),
        ({"url": "http://example.com/a.ova"}, "url"),  # unknown here: the URL import is its own endpoint
    ],
)
def test_bad_upload_is_400_and_writes_nothing(api, repo, fields, field):
    body = {"repository": repo.pk, "file": SimpleUploadedFile("a.ova", ova_bytes())}
    for key, value in fields.items():
        if value is None:
            body.pop(key)
        elif value == "ovf":
            body[key] = SimpleUploadedFile("a.ovf", ovf_xml().encode())
        else:
            body[key] = value
    before = staged_files()
    response = upload(api, **body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Job.objects.exists() and staged_files() == before


def test_upload_as_json_is_refused(api, repo):
    response = api.post("/api/v1/virtual-appliances/", {"repository": repo.pk}, format="json")
    assert response.status_code == 415
    assert not Job.objects.exists()


def test_import_from_url_answers_202(api, repo):
    response = api.post(
        "/api/v1/virtual-appliances/import/",
        {"repository": repo.pk, "url": "http://example.com/x/db.ovf"},
        format="json",
    )
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.operation == "appliance.import" and job.params == {
        "repository_id": repo.pk,
        "name": "db",
        "url": "http://example.com/x/db.ovf",
    }


@pytest.mark.parametrize(
    "body,field",
    [
        ({"url": "ftp://example.com/a.ova"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": None}, "url"),
        ({"url": "http://example.com/a.ova", "file": "x"}, "file"),
        ({"url": "http://example.com/a.ova", "repository": None}, "repository"),
        ({"url": "http://example.com/taken.ova"}, "name"),  # the repository has an appliance of that name
    ],
)
def test_bad_import_is_400_and_writes_nothing(api, repo, body, field):
    f.VirtualApplianceFactory(repository=repo, name="taken")
    data = {"repository": repo.pk, **body}
    data = {k: v for k, v in data.items() if v is not None}
    response = api.post("/api/v1/virtual-appliances/import/", data, format="json")
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Job.objects.exists()


def test_import_needs_the_add_permission(plain_api, repo):
    response = plain_api.post(
        "/api/v1/virtual-appliances/import/", {"repository": repo.pk, "url": "http://example.com/a.ova"}, format="json"
    )
    assert response.status_code == 403 and not Job.objects.exists()


def test_list_and_detail_show_the_vms(api, repo):
    appliance = f.VirtualApplianceFactory(repository=repo)
    disk = f.VirtualDiskFactory(repository=repo)
    web = VirtualApplianceVm.objects.create(appliance=appliance, name="web", vcpus=2, memory_mib=1024, os_type="OL7")
    web.disks.add(disk)
    VirtualApplianceVm.objects.create(appliance=appliance, name="db")
    listed = api.get("/api/v1/virtual-appliances/").json()
    assert listed["count"] == 1
    detail = api.get(f"/api/v1/virtual-appliances/{appliance.pk}/").json()
    assert detail == listed["results"][0]
    vms = {v["name"]: v for v in detail["vms"]}
    assert vms["web"] == {
        "id": web.pk,
        "name": "web",
        "vcpus": 2,
        "memory_mib": 1024,
        "os_type": "OL7",
        "disks": [disk.pk],
    }
    assert vms["db"]["disks"] == []


# ---------------------------------------------------------------- real repository


@pytest.mark.integration
def test_ova_upload_then_vm_from_the_appliance(api, real_estate, tmp_path):  # noqa: F811
    e = real_estate
    disk = tmp_path / "disk1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    ova = make_ova(
        tmp_path / "tiny.ova", ovf_xml(systems=[("tiny", 1, 256, "Other Linux", ["d1"])]), {"disk1.qcow2": disk}
    )
    with open(ova, "rb") as fh:
        response = upload(api, repository=e["repo"].pk, file=SimpleUploadedFile("tiny.ova", fh.read()))
    assert response.status_code == 202, response.json()
    run_pending_jobs()
    job = api.get(f"/api/v1/jobs/{response.json()['id']}/").json()
    assert job["status"] == "SUCCESS", job["error"]
    (appliance,) = api.get("/api/v1/virtual-appliances/").json()["results"]
    (avm,) = appliance["vms"]
    assert (appliance["name"], avm["name"], avm["vcpus"], avm["memory_mib"], len(avm["disks"])) == (
        "tiny",
        "tiny",
        1,
        256,
        1,
    )

    created = api.post(
        "/api/v1/vms/",
        {
            "name": "from-ova",
            "domain_type": "HVM",
            "os_type": "OTHER_LINUX",
            "server_pool": e["pool"].pk,
            "source": {"kind": "appliance", "appliance_vm": avm["id"]},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    deploy_id = int(re.search(r"/api/v1/jobs/(\d+)/", created.headers["Link"]).group(1))
    run_pending_jobs()
    deploy = api.get(f"/api/v1/jobs/{deploy_id}/").json()
    assert deploy["operation"] == "appliance.deploy" and deploy["status"] == "SUCCESS", deploy["error"]
    vm = api.get(f"/api/v1/vms/{created.json()['id']}/").json()
    (slot,) = vm["disks"]
    assert slot["kind"] == "DISK" and slot["virtual_disk"] != avm["disks"][0] and slot["bus"] == "sata"


# ---------------------------------------------------------------- delete


def live_job(operation: str, **params) -> Job:
    return Job.objects.create(operation=operation, summary=operation, status="RUNNING", params=params)


def test_delete_answers_202_with_the_job_or_409_while_a_job_uses_it(api, repo):
    appliance = f.VirtualApplianceFactory(repository=repo, name="suite")
    url = f"/api/v1/virtual-appliances/{appliance.pk}/"
    deploy = live_job("appliance.deploy", appliance_id=appliance.pk, vm_id=1)
    refused = api.delete(url)
    assert refused.status_code == 409 and f"job #{deploy.pk}" in refused.json()["detail"]
    deploy.status = "SUCCESS"
    deploy.save()
    importing = live_job("appliance.import", repository_id=repo.pk, name="suite")
    refused = api.delete(url)
    assert refused.status_code == 409 and "still being imported" in refused.json()["detail"]
    importing.status = "FAILURE"
    importing.save()
    assert not Job.objects.filter(operation="appliance.delete").exists()

    accepted = api.delete(url)
    assert accepted.status_code == 202, accepted.json()
    job = accepted.json()
    assert (job["operation"], job["target_type"], job["target_id"]) == (
        "appliance.delete",
        "inventory.virtualappliance",
        appliance.pk,
    )
    # The queued deletion holds the appliance: a second one is refused.
    assert api.delete(url).status_code == 409
    # Nor is a VM made from it any more: its files would be gone before the copy.
    avm = VirtualApplianceVm.objects.create(appliance=appliance, name="db")
    created = api.post(
        "/api/v1/vms/",
        {
            "name": "late",
            "domain_type": "HVM",
            "os_type": "OTHER_LINUX",
            "server_pool": repo.server_pools.get().pk,
            "source": {"kind": "appliance", "appliance_vm": avm.pk},
        },
        format="json",
    )
    assert created.status_code == 409 and "being deleted by job" in created.json()["detail"], created.json()
    assert VirtualAppliance.objects.filter(pk=appliance.pk).exists()  # the job removes it


def test_delete_needs_the_delete_permission(plain_api, repo):
    appliance = f.VirtualApplianceFactory(repository=repo)
    assert plain_api.delete(f"/api/v1/virtual-appliances/{appliance.pk}/").status_code == 403
    assert not Job.objects.exists()


def test_delete_of_an_appliance_with_no_files_of_its_own(api, repo):
    """A record whose descriptor path is not under its repository's Assemblies/ loses only its
    records: nothing outside Assemblies/<dir> is ever removed on an appliance's behalf."""
    appliance = f.VirtualApplianceFactory(repository=repo, ovf_path="/etc/appliance.ovf")
    disk = f.VirtualDiskFactory(repository=repo)
    VirtualApplianceVm.objects.create(appliance=appliance, name="web").disks.add(disk)
    assert api.delete(f"/api/v1/virtual-appliances/{appliance.pk}/").status_code == 202
    run_pending_jobs()
    job = Job.objects.get(operation="appliance.delete")
    assert job.status == "SUCCESS", job.error
    assert not VirtualAppliance.objects.exists() and not VirtualApplianceVm.objects.exists()
    assert not type(disk).objects.filter(pk=disk.pk).exists()
    assert job.result["deleted"] == appliance.pk


def qemu_img_info(path) -> dict:
    out = subprocess.run(["qemu-img", "info", "--output=json", str(path)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


@pytest.mark.integration
def test_vmdk_appliance_is_recorded_as_vmdk_copied_as_qcow2_and_deleted(api, real_estate, tmp_path):  # noqa: F811
    """An OVA as other tools make it (streamOptimized VMDK): the record says what the stored
    file is, a VM made from it gets a qcow2 copy with the same content, and deleting the
    appliance removes its Assemblies/ directory and records but not the VM's copy."""
    e = real_estate
    raw = tmp_path / "seed.raw"
    raw.write_bytes(b"ovmweb appliance disk\n" * 4096)
    vmdk = tmp_path / "disk1.vmdk"
    subprocess.run(
        ["qemu-img", "convert", "-q", "-O", "vmdk", "-o", "subformat=streamOptimized", str(raw), str(vmdk)], check=True
    )
    ova = make_ova(
        tmp_path / "vmdk.ova",
        ovf_xml(systems=[("vm1", 1, 256, "Other Linux", ["d1"])], disks=[("d1", "disk1.vmdk", 1)]),
        {"disk1.vmdk": vmdk},
    )
    with open(ova, "rb") as fh:
        response = upload(api, repository=e["repo"].pk, file=SimpleUploadedFile("vmdk.ova", fh.read()))
    assert response.status_code == 202, response.json()
    run_pending_jobs()
    assert Job.objects.get(pk=response.json()["id"]).status == "SUCCESS"
    appliance = VirtualAppliance.objects.get(name="vmdk")
    (stored,) = VirtualDisk.objects.filter(appliance_vms__appliance=appliance)
    stored_path = Path(e["repo"].path) / "VirtualDisks" / stored.volume
    assert stored.format == "vmdk" == qemu_img_info(stored_path)["format"]
    assert api.get(f"/api/v1/virtual-disks/{stored.pk}/").json()["format"] == "vmdk"

    created = api.post(
        "/api/v1/vms/",
        {
            "name": "from-vmdk",
            "domain_type": "HVM",
            "os_type": "OTHER_LINUX",
            "server_pool": e["pool"].pk,
            "source": {"kind": "appliance", "appliance_vm": appliance.vms.get().pk},
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    run_pending_jobs()
    deploy = Job.objects.get(operation="appliance.deploy")
    assert deploy.status == "SUCCESS", deploy.error
    copy = VirtualDisk.objects.get(pk=deploy.result["disk_ids"][0])
    copy_path = Path(e["repo"].path) / "VirtualDisks" / copy.volume
    assert copy.format == "qcow2" == qemu_img_info(copy_path)["format"]
    # Same guest-visible bytes (the OVF's 1 GiB capacity was recorded; the image is the file's own size).
    compare = subprocess.run(["qemu-img", "compare", "-q", str(raw), str(copy_path)], capture_output=True, text=True)
    assert compare.returncode == 0, compare.stdout + compare.stderr

    directory = Path(appliances_service.assembly_directory(appliance))
    assert directory.is_dir()
    response = api.delete(f"/api/v1/virtual-appliances/{appliance.pk}/")
    assert response.status_code == 202, response.json()
    run_pending_jobs()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "SUCCESS", job.error
    assert not directory.exists() and list((Path(e["repo"].path) / "Assemblies").iterdir()) == []
    assert not VirtualAppliance.objects.exists() and not VirtualDisk.objects.filter(pk=stored.pk).exists()
    assert copy_path.is_file() and VirtualDisk.objects.filter(pk=copy.pk).exists()
    assert api.get(f"/api/v1/virtual-appliances/{appliance.pk}/").status_code == 404


def test_other_disk_images_are_refused_not_recorded_as_raw(tmp_path):
    vdi = tmp_path / "d.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(vdi), "1M"], check=True)
    with pytest.raises(appliances_service.ApplianceError, match="VDI image"):
        appliances_service.disk_format(vdi)
    vmdk = tmp_path / "d.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "1M"], check=True)
    assert appliances_service.disk_format(vmdk) == "vmdk"
    raw = tmp_path / "d.img"
    raw.write_bytes(b"\0" * 1024)
    assert appliances_service.disk_format(raw) == "raw"


@pytest.mark.integration
def test_an_ova_with_a_vdi_disk_fails_before_anything_is_stored(api, real_estate, tmp_path):  # noqa: F811
    e = real_estate
    vdi = tmp_path / "disk1.vdi"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vdi", str(vdi), "4M"], check=True)
    ova = make_ova(tmp_path / "vbox.ova", ovf_xml(disks=[("d1", "disk1.vdi", 1)]), {"disk1.vdi": vdi})
    with open(ova, "rb") as fh:
        response = upload(api, repository=e["repo"].pk, file=SimpleUploadedFile("vbox.ova", fh.read()))
    assert response.status_code == 202, response.json()
    run_pending_jobs()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.status == "FAILURE" and "disk1.vdi is a VDI image" in job.error
    assert not VirtualAppliance.objects.exists() and not VirtualDisk.objects.exists()
    assert list((Path(e["repo"].path) / "Assemblies").iterdir()) == []
