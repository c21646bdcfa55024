"""POST /api/v1/vms/ with every installation source of seed 7.1/7.2: iso, pvm_url,
template, clone, appliance, none. Sources that copy disks name their job in the
``Link`` header; refused sources are 400 with field errors and write nothing."""

import re

import pytest

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualApplianceVm, VirtualMachine
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db


def create(api, **body):
    return api.post("/api/v1/vms/", {"name": "new-vm", "os_type": "OL6", **body}, format="json")


def monitored_job(response) -> Job:
    match = re.fullmatch(r'</api/v1/jobs/(\d+)/>; rel="monitor"', response.headers["Link"])
    assert match, response.headers["Link"]
    return Job.objects.get(pk=int(match.group(1)))


def test_source_none(api, pool, repo):
    response = create(api, domain_type="HVM", server_pool=pool.pk, repository=repo.pk, source={"kind": "none"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "STOPPED" and body["disks"] == [] and body["boot_order"] == ["disk"]
    assert "Link" not in response.headers and not Job.objects.exists()


def test_source_iso(api, pool, repo):
    iso = f.IsoFileFactory(repository=repo)
    disk = f.VirtualDiskFactory(repository=repo)
    response = create(
        api,
        domain_type="HVM",
        server_pool=pool.pk,
        repository=repo.pk,
        source={"kind": "iso", "iso": iso.pk},
        disks=[{"virtual_disk": disk.pk}],
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["boot_order"] == ["cdrom", "disk"] and body["origin"] == f"iso:{iso.name}"
    assert [(d["kind"], d["virtual_disk"], d["iso"], d["bus"]) for d in body["disks"]] == [
        ("DISK", disk.pk, None, "sata"),
        ("CDROM", None, iso.pk, "sata"),
    ]


def test_source_iso_unseen_by_the_pool_is_400(api, pool, repo):
    iso = f.IsoFileFactory(repository=f.RepositoryFactory())
    response = create(
        api, domain_type="HVM", server_pool=pool.pk, repository=repo.pk, source={"kind": "iso", "iso": iso.pk}
    )
    assert response.status_code == 400 and "source" in response.json()
    assert not VirtualMachine.objects.exists()


def test_source_pvm_url(api, pool, repo):
    url = "http://mirror.example.com/ol6/"
    response = create(
        api, domain_type="PVM", server_pool=pool.pk, repository=repo.pk, source={"kind": "pvm_url", "url": url}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["pvm_boot_url"] == url and response.json()["origin"] == url
    # PVM only, and not for Oracle Linux 7 (seed 7.2).
    for domain_type, os_type in (("HVM", "OL6"), ("PVM", "OL7")):
        refused = create(
            api,
            name="other",
            domain_type=domain_type,
            os_type=os_type,
            server_pool=pool.pk,
            source={"kind": "pvm_url", "url": url},
        )
        assert refused.status_code == 400, refused.json()
    bad_url = create(api, name="other", domain_type="PVM", source={"kind": "pvm_url", "url": "file:///etc"})
    assert bad_url.status_code == 400 and "pvm_boot_url" in bad_url.json()
    assert list(VirtualMachine.objects.values_list("name", flat=True)) == ["new-vm"]


def test_source_template_copies_disks_in_a_job(api, pool, repo):
    template = f.VirtualMachineFactory(
        server_pool=pool, repository=repo, status=VmStatus.TEMPLATE, vcpus=2, memory_mib=1024
    )
    f.VmDiskSlotFactory(vm=template, slot=0)
    response = create(api, domain_type="HVM", source={"kind": "template", "template": template.pk})
    assert response.status_code == 201, response.json()
    body = response.json()
    # vCPUs and memory come from the template when not given.
    assert (body["vcpus"], body["memory_mib"], body["server_pool"]) == (2, 1024, pool.pk)
    job = monitored_job(response)
    assert job.operation == "vm.clone" and job.target_id == body["id"] and job.status == "QUEUED"
    assert job.params["source_vm_id"] == template.pk and len(job.params["disks"]) == 1


def test_source_template_must_be_a_template(api, pool, repo):
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    response = create(api, domain_type="HVM", source={"kind": "template", "template": vm.pk})
    assert response.status_code == 400 and "not a template" in str(response.json()["source"])
    assert not VirtualMachine.objects.filter(name="new-vm").exists() and not Job.objects.exists()


def test_source_clone(api, pool, repo):
    origin = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    f.VmDiskSlotFactory(vm=origin, slot=0)
    f.VnicFactory(vm=origin)
    response = create(api, domain_type="HVM", source={"kind": "clone", "vm": origin.pk}, memory_mib=768)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["memory_mib"] == 768 and len(body["vnics"]) == 1
    assert body["vnics"][0]["mac"] != origin.vnics.get().mac
    job = monitored_job(response)
    assert job.operation == "vm.clone" and job.params["source_vm_id"] == origin.pk


def test_source_appliance(api, pool, repo):
    appliance = f.VirtualApplianceFactory(repository=repo)
    avm = VirtualApplianceVm.objects.create(appliance=appliance, name="web", vcpus=2, memory_mib=768)
    avm.disks.add(f.VirtualDiskFactory(repository=repo), f.VirtualDiskFactory(repository=repo))
    response = create(
        api, domain_type="PVHVM", server_pool=pool.pk, source={"kind": "appliance", "appliance_vm": avm.pk}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["vcpus"], body["memory_mib"], body["repository"]) == (2, 768, repo.pk)
    assert body["origin"] == f"appliance:{appliance.name}/web"
    job = monitored_job(response)
    assert job.operation == "appliance.deploy" and job.target_id == body["id"]
    assert [d["bus"] for d in job.params["disks"]] == ["virtio", "virtio"]


def test_source_appliance_into_an_unseen_repository_is_400(api, pool, repo):
    appliance = f.VirtualApplianceFactory(repository=f.RepositoryFactory())
    avm = VirtualApplianceVm.objects.create(appliance=appliance, name="web")
    response = create(api, domain_type="HVM", server_pool=pool.pk, source={"kind": "appliance", "appliance_vm": avm.pk})
    assert response.status_code == 400 and "repository" in response.json()
    assert not VirtualMachine.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize(
    "source,field",
    [
        ({"kind": "appliance"}, "appliance_vm"),
        ({"kind": "iso"}, "iso"),
        ({"kind": "template"}, "template"),
        ({"kind": "clone"}, "vm"),
        ({"kind": "pvm_url"}, "url"),
        ({"kind": "none", "iso": 1}, "iso"),
        ({"kind": "appliance", "appliance_vm": 999999}, "appliance_vm"),
        ({"kind": "floppy"}, "kind"),
        ({"kind": "none", "colour": "red"}, "colour"),
    ],
)
def test_bad_sources_are_field_errors(api, pool, source, field):
    response = create(api, domain_type="HVM", server_pool=pool.pk, source=source)
    assert response.status_code == 400, response.json()
    assert field in response.json()["source"], response.json()
    assert not VirtualMachine.objects.exists()


def test_disk_bus_per_disk(api, pool, repo):
    disk = f.VirtualDiskFactory(repository=repo)
    response = create(
        api,
        domain_type="HVM",
        server_pool=pool.pk,
        source={"kind": "none"},
        disks=[{"virtual_disk": disk.pk, "bus": "virtio"}],
    )
    assert response.status_code == 201, response.json()
    assert response.json()["disks"][0]["bus"] == "virtio"
    # A PVHVM guest needs paravirtual disks (seed 7.1).
    refused = create(
        api,
        name="pv",
        domain_type="PVHVM",
        server_pool=pool.pk,
        source={"kind": "none"},
        disks=[{"virtual_disk": f.VirtualDiskFactory(repository=repo).pk, "bus": "ide"}],
    )
    assert refused.status_code == 400, refused.json()
    assert not VirtualMachine.objects.filter(name="pv").exists()
