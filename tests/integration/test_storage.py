"""Storage on the real libvirtd: ISO upload through the API and import over HTTP,
virtual disks (sparse or not, resize, delete while in use, clones), checked on the
real files with ``qemu-img info``."""

import functools
import http.server
import json
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from ovmweb.errors import Conflict
from ovmweb.inventory.models import IsoFile, VirtualDisk
from ovmweb.inventory.services import repositories, storage, vms
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import GUEST_ISO

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1024 * 1024


def qemu_img_info(path) -> dict:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout)


def disk_path(disk: VirtualDisk) -> Path:
    return Path(disk.repository.path) / "VirtualDisks" / disk.volume


def _run(job) -> Job:
    run_pending_jobs()
    job.refresh_from_db()
    return job


def _make_disk(estate, name, size, sparse) -> VirtualDisk:
    job = _run(
        storage.disk_create(user=estate["user"], repository=estate["repo"], name=name, size_bytes=size, sparse=sparse)
    )
    assert job.status == "SUCCESS", job.error
    return VirtualDisk.objects.select_related("repository").get(name=name)


def test_iso_upload_through_the_api(estate, tmp_path):
    client = APIClient()
    client.force_authenticate(estate["user"])
    with open(GUEST_ISO, "rb") as fh:
        response = client.post(
            "/api/v1/iso-files/", {"repository": estate["repo"].pk, "file": fh, "name": "api.iso"}, format="multipart"
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert _run(job).status == "SUCCESS", job.error
    stored = Path(estate["repo"].path) / "ISOs" / "api.iso"
    assert stored.read_bytes() == GUEST_ISO.read_bytes()
    iso = IsoFile.objects.get(repository=estate["repo"], name="api.iso")
    assert iso.size_bytes == GUEST_ISO.stat().st_size and len(iso.sha256) == 64
    listed = client.get("/api/v1/iso-files/").json()
    assert "api.iso" in json.dumps(listed)


def test_iso_import_from_a_loopback_http_server(estate, tmp_path, settings):
    settings.OVMWEB_IMPORT_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # imports refuse loopback unless allowed
    served = tmp_path / "www"
    served.mkdir()
    (served / "imported.iso").write_bytes(GUEST_ISO.read_bytes())
    (served / "notaniso.iso").write_bytes(b"<html>hello</html>" * 4000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.RequestHandlerClass.log_message = lambda *a, **k: None
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        job = _run(storage.iso_import(repository=estate["repo"], user=estate["user"], url=f"{base}/imported.iso"))
        missing = _run(storage.iso_import(repository=estate["repo"], user=estate["user"], url=f"{base}/nothere.iso"))
        bogus = _run(storage.iso_import(repository=estate["repo"], user=estate["user"], url=f"{base}/notaniso.iso"))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert job.status == "SUCCESS", job.error
    isos = Path(estate["repo"].path) / "ISOs"
    assert (isos / "imported.iso").read_bytes() == GUEST_ISO.read_bytes()
    assert IsoFile.objects.filter(repository=estate["repo"], name="imported.iso").exists()
    assert missing.status == "FAILURE" and "404" in missing.error
    assert bogus.status == "FAILURE" and "not an ISO" in bogus.error
    assert sorted(p.name for p in isos.iterdir()) == ["imported.iso", "tiny.iso"]
    assert not list((Path(estate["repo"].path).parent).glob("**/uploads/*"))


def test_sparse_and_fully_allocated_disks_and_resize(estate):
    sparse = _make_disk(estate, "sparse", 64 * MIB, True)
    full = _make_disk(estate, "full", 64 * MIB, False)
    sparse_info, full_info = qemu_img_info(disk_path(sparse)), qemu_img_info(disk_path(full))
    assert sparse_info["format"] == full_info["format"] == "qcow2"
    assert sparse_info["virtual-size"] == full_info["virtual-size"] == 64 * MIB
    assert sparse_info["actual-size"] < 2 * MIB
    assert full_info["actual-size"] >= 64 * MIB
    assert disk_path(full).stat().st_blocks * 512 >= 64 * MIB > disk_path(sparse).stat().st_blocks * 512 * 10

    job = _run(storage.disk_resize(disk=sparse, user=estate["user"], size_bytes=96 * MIB))
    assert job.status == "SUCCESS", job.error
    assert qemu_img_info(disk_path(sparse))["virtual-size"] == 96 * MIB
    sparse.refresh_from_db()
    assert sparse.size_bytes == 96 * MIB


def test_disk_delete_refused_while_attached_to_a_running_vm(estate):
    disk = _make_disk(estate, "data", 32 * MIB, True)
    vm = vms.vm_create(
        user=estate["user"],
        name=f"disk-{uuid.uuid4().hex[:6]}",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=128,
        source={"kind": "iso", "iso": estate["iso"]},
        boot_order=["cdrom", "disk"],
        disks=[{"virtual_disk": disk}],
    )
    vms.vm_action(vm=vm, action="start", user=estate["user"])
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "RUNNING"
    with pytest.raises(Conflict, match="running"):
        storage.disk_delete(disk=disk, user=estate["user"])
    assert disk_path(disk).exists()
    vms.vm_action(vm=vm, action="kill", user=estate["user"])
    run_pending_jobs()
    job = _run(storage.disk_delete(disk=disk, user=estate["user"]))
    assert job.status == "SUCCESS", job.error
    assert not disk_path(disk).exists()
    assert not VirtualDisk.objects.filter(pk=disk.pk).exists()
    # The stopped VM lost that slot (and keeps its CD-ROM).
    assert [s.kind for s in vm.disk_slots.all()] == ["CDROM"]


def test_clones_thin_sparse_and_fully_allocated(estate):
    base = _make_disk(estate, "base", 48 * MIB, True)
    # Some data in the base so that copies have something to copy.
    subprocess.run(
        ["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 0 4M", str(disk_path(base))], check=True, capture_output=True
    )
    clones = {
        kind: storage.disk_clone(disk=base, target_repository=estate["repo"], clone_type=kind, name=f"c-{kind}")
        for kind in ("THIN", "SPARSE", "NON_SPARSE")
    }
    thin = qemu_img_info(disk_path(clones["THIN"]))
    # The thin clone stands on the source's frozen file (a read-only base), not on the source,
    # which is now an overlay of the same base (the copies below read through it).
    frozen = clones["THIN"].backing_disk
    assert thin["format"] == "qcow2" and thin["backing-filename"] == str(disk_path(frozen))
    assert frozen.thin_base and base.backing_disk == frozen
    assert thin["actual-size"] < 2 * MIB
    sparse = qemu_img_info(disk_path(clones["SPARSE"]))
    assert "backing-filename" not in sparse and sparse["virtual-size"] == 48 * MIB
    assert 4 * MIB <= sparse["actual-size"] < 16 * MIB
    full = qemu_img_info(disk_path(clones["NON_SPARSE"]))
    assert "backing-filename" not in full and full["actual-size"] >= 48 * MIB
    # The data came along in each.
    for clone in clones.values():
        out = subprocess.run(
            ["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x5a 0 4M", str(disk_path(clone))],
            capture_output=True,
            text=True,
        )
        assert "Pattern verification failed" not in out.stdout + out.stderr and out.returncode == 0
    # A base with thin clones is not deleted.
    with pytest.raises(Conflict, match="thin clones"):
        storage.disk_delete(disk=frozen, user=estate["user"])


def test_vm_json_follows_create_and_update(estate):
    vm = vms.vm_create(
        user=estate["user"],
        name="described",
        server_pool=estate["pool"],
        repository=estate["repo"],
        domain_type="HVM",
        os_type="OTHER_LINUX",
        memory_mib=128,
        max_memory_mib=256,
        source={"kind": "iso", "iso": estate["iso"]},
        boot_order=["cdrom"],
    )
    path = Path(estate["repo"].path) / "VirtualMachines" / str(vm.uuid) / "vm.json"
    config = json.loads(path.read_text())
    assert config["name"] == "described" and config["memory_mib"] == 128
    assert [d["iso"] for d in config["disks"]] == ["tiny.iso"]
    vms.vm_update(vm=vm, user=estate["user"], name="redescribed", memory_mib=192)
    config = json.loads(path.read_text())
    assert config["name"] == "redescribed" and config["memory_mib"] == 192


def test_refresh_discovers_files_put_into_the_repository(estate):
    repo = Path(estate["repo"].path)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", str(repo / "VirtualDisks" / "found.qcow2"), "16M"], check=True
    )
    (repo / "ISOs" / "found.iso").write_bytes(GUEST_ISO.read_bytes())
    job = _run(repositories.repository_refresh(repository=estate["repo"], user=estate["user"]))
    assert job.status == "SUCCESS", job.error
    assert job.result["found"] == {"isos": 1, "disks": 1}
    disk = VirtualDisk.objects.get(volume="found.qcow2")
    assert disk.format == "qcow2" and disk.size_bytes == 16 * MIB and disk.repository_id == estate["repo"].pk
    assert IsoFile.objects.filter(repository=estate["repo"], name="found.iso").exists()
    # A second refresh finds nothing new.
    job = _run(repositories.repository_refresh(repository=estate["repo"], user=estate["user"]))
    assert job.result["found"] == {"isos": 0, "disks": 0}
