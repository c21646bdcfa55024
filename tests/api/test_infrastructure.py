"""Servers, repositories, networks, virtual disks and ISO files through the API."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import IsoFile, Network, Repository, Server, VirtualDisk
from ovmweb.jobs.models import Job
from tests import factories as f

pytestmark = pytest.mark.django_db
FINGERPRINT = "SHA256:" + "Q" * 43


def test_discover_answers_202_and_never_echoes_the_password(api):
    body = {
        "hostname": "hv1.example.com",
        "transport": "ssh",
        "ssh_port": 22,
        "ssh_user": "root",
        "password": "sup3r-secret",
        "host_key_fingerprint": FINGERPRINT,
    }
    response = api.post("/api/v1/servers/discover/", body, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["operation"] == "server.discover"
    assert "sup3r-secret" not in response.content.decode()
    server = Server.objects.get(hostname="hv1.example.com")
    assert "sup3r-secret" not in server.credentials_encrypted
    detail = api.get(f"/api/v1/servers/{server.pk}/").json()
    assert "credentials_encrypted" not in detail


def test_server_patch_goes_through_services(api):
    server = f.ServerFactory()
    pool = f.ServerPoolFactory()
    response = api.patch(
        f"/api/v1/servers/{server.pk}/", {"inbound_migration_lock": True, "server_pool": pool.pk}, format="json"
    )
    assert response.status_code == 200, response.json()
    server.refresh_from_db()
    assert server.inbound_migration_lock is True and server.server_pool == pool
    refused = api.patch(f"/api/v1/servers/{server.pk}/", {"hostname": "elsewhere"}, format="json")
    assert refused.status_code == 400 and "hostname" in refused.json()


def test_repository_create_refresh_present(api):
    server = f.ServerFactory()
    response = api.post(
        "/api/v1/repositories/",
        {"name": "local-1", "kind": "LOCAL", "path": "/srv/r1", "server": server.pk},
        format="json",
    )
    assert response.status_code == 202, response.json()
    repo = Repository.objects.get(name="local-1")
    assert response.json()["target_id"] == repo.pk
    # A local repository needs its server: refused with a field error, nothing written.
    refused = api.post("/api/v1/repositories/", {"name": "local-2", "kind": "LOCAL", "path": "/srv/r2"}, format="json")
    assert refused.status_code == 400
    assert not Repository.objects.filter(name="local-2").exists()
    shared = f.RepositoryFactory()
    Job.objects.all().delete()
    assert api.post(f"/api/v1/repositories/{shared.pk}/refresh/", {}, format="json").status_code == 202
    # The refresh job holds the repository: a second one is refused naming the holder.
    second = api.post(f"/api/v1/repositories/{shared.pk}/refresh/", {}, format="json")
    assert second.status_code == 409
    pool = f.ServerPoolFactory()
    Job.objects.all().delete()
    presented = api.post(f"/api/v1/repositories/{shared.pk}/present/", {"server_pool": pool.pk}, format="json")
    assert presented.status_code == 202, presented.json()
    assert pool in shared.server_pools.all()


def test_network_crud(api):
    pool = f.ServerPoolFactory()
    created = api.post(
        "/api/v1/networks/",
        {
            "name": "vmnet",
            "libvirt_network": "default",
            "vlan_id": 10,
            "roles": ["VIRTUAL_MACHINE"],
            "server_pools": [pool.pk],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    pk = created.json()["id"]
    assert api.patch(f"/api/v1/networks/{pk}/", {"vlan_id": 20}, format="json").json()["vlan_id"] == 20
    bad = api.patch(f"/api/v1/networks/{pk}/", {"vlan_id": 5000}, format="json")
    assert bad.status_code == 400 and Network.objects.get(pk=pk).vlan_id == 20
    f.VnicFactory(network=Network.objects.get(pk=pk))
    in_use = api.delete(f"/api/v1/networks/{pk}/")
    assert in_use.status_code == 409 and "vmnet" in in_use.json()["detail"]


def test_virtual_disk_create_resize_delete(api):
    repo = f.RepositoryFactory()
    created = api.post(
        "/api/v1/virtual-disks/", {"name": "data", "repository": repo.pk, "size_bytes": 1 << 30}, format="json"
    )
    assert created.status_code == 202, created.json()
    disk = VirtualDisk.objects.get(name="data")
    assert created.json()["operation"] == "disk.create" and created.json()["target_id"] == disk.pk
    assert disk.format == "qcow2" and not disk.shareable
    Job.objects.all().delete()
    shrink = api.post(f"/api/v1/virtual-disks/{disk.pk}/resize/", {"size_bytes": 1 << 20}, format="json")
    assert shrink.status_code == 400 and "size_bytes" in shrink.json()
    grow = api.post(f"/api/v1/virtual-disks/{disk.pk}/resize/", {"size_bytes": 2 << 30}, format="json")
    assert grow.status_code == 202 and grow.json()["operation"] == "disk.resize"
    Job.objects.all().delete()
    vm = f.VirtualMachineFactory(status=VmStatus.RUNNING, server=f.ServerFactory())
    f.VmDiskSlotFactory(vm=vm, virtual_disk=disk, slot=0)
    in_use = api.delete(f"/api/v1/virtual-disks/{disk.pk}/")
    assert in_use.status_code == 409 and vm.name in in_use.json()["detail"]
    vm.disk_slots.all().delete()
    assert api.delete(f"/api/v1/virtual-disks/{disk.pk}/").status_code == 202


def test_a_shareable_disk_is_raw(api):
    """Two guests may write a shareable disk at once: only raw survives that (libvirt refuses qcow2)."""
    repo = f.RepositoryFactory()
    created = api.post(
        "/api/v1/virtual-disks/",
        {"name": "quorum", "repository": repo.pk, "size_bytes": 1 << 30, "shareable": True},
        format="json",
    )
    assert created.status_code == 202, created.json()
    disk = VirtualDisk.objects.get(name="quorum")
    assert disk.shareable and disk.format == "raw" and disk.volume.endswith(".img")


def test_iso_upload_and_import(api):
    repo = f.RepositoryFactory()
    upload = SimpleUploadedFile("tiny.iso", b"\0" * 4096, content_type="application/octet-stream")
    response = api.post("/api/v1/iso-files/", {"repository": repo.pk, "file": upload}, format="multipart")
    assert response.status_code == 202, response.json()
    job = Job.objects.get(pk=response.json()["id"])
    assert job.operation == "iso.upload" and job.params["name"] == "tiny.iso" and job.params["size"] == 4096
    imported = api.post(
        "/api/v1/iso-files/import/", {"repository": repo.pk, "url": "http://example.com/os.iso"}, format="json"
    )
    assert imported.status_code == 202 and imported.json()["operation"] == "iso.import"
    f.IsoFileFactory(repository=repo, name="taken.iso")
    duplicate = api.post(
        "/api/v1/iso-files/import/", {"repository": repo.pk, "url": "http://example.com/taken.iso"}, format="json"
    )
    assert duplicate.status_code == 400 and "name" in duplicate.json()
    no_file = api.post("/api/v1/iso-files/", {"repository": repo.pk}, format="multipart")
    assert no_file.status_code == 400 and "file" in no_file.json()
    assert IsoFile.objects.count() == 1
