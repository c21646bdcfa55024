"""Live migration with storage for real (seed 7.7): a VM on a local repository of server a
migrates live to server b with its disks copied into b's local repository, and back.

One guest, three migrations: a -> b through the API; b -> a where libvirt reports an error
although the guest arrived (the job asks libvirt where the domain is: never rolled back
onto deleted disks); a -> b refused by libvirt before anything moved (the target's volumes
go, the guest runs on at the source). A marker written inside the guest on its disk reads
back identically after each; the disk stood on a thin-clone base, which stays (its other
clone stands on it) while the copy is standalone."""

import subprocess
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.libvirt.migration import MigrationMixin
from ovmweb.inventory.models import Repository, VirtualDisk
from ovmweb.inventory.services import repositories, storage, vm_migration, vms
from ovmweb.inventory.services.storage_journal import entries
from ovmweb.jobs.models import Job
from ovmweb.jobs.testing import run_pending_jobs

from .conftest import SerialShell, ok, start_on

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1 << 20


def _local_repo(estate, side: str, sub: str) -> tuple[Repository, Path]:
    endpoints = estate["endpoints"]
    backing = Path(endpoints["local_backing"][side]) / sub
    backing.mkdir()
    job = ok(
        repositories.repository_create(
            user=estate["user"],
            name=f"local-{side}-{sub}",
            kind="LOCAL",
            path=f"{endpoints['local_path']}/{sub}",
            server=estate[side],
            server_pools=[estate["pool"]],
        )
    )
    return Repository.objects.get(pk=job.target_id), backing / "VirtualDisks"


def _migrate_and_check(shell_server, vm, token: str) -> str:
    shell = SerialShell(shell_server, vm.serial_port)
    try:
        shell.wait_for_shell(timeout=60)
        assert shell.run("dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -n1") == f"DISK-{token}"
        # Data of the thin-clone base under the disk, read through the copy.
        return shell.run("dd if=/dev/vda bs=512 skip=8192 count=1 2>/dev/null | head -c 8")
    finally:
        shell.close()


def test_live_migration_with_storage_moves_the_disks_and_never_loses_them(estate, monkeypatch):
    a, b, user = estate["a"], estate["b"], estate["user"]
    sub = uuid.uuid4().hex[:6]
    local_a, files_a = _local_repo(estate, "a", sub)
    local_b, files_b = _local_repo(estate, "b", sub)
    vm = vms.vm_create(
        user=user,
        name=f"smig-{sub}",
        server_pool=estate["pool"],
        repository=local_a,
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=192,
        max_memory_mib=192,
        source={"kind": "iso", "iso": estate["iso"]},
        disks=[{"new": {"name": "data", "size_bytes": 32 * MIB, "repository": local_a}}],
        boot_order=["cdrom", "disk"],
    )
    run_pending_jobs()
    disk = vm.disk_slots.get(kind="DISK").virtual_disk
    subprocess.run(["qemu-io", "-f", disk.format, "-c", "write -P 0x42 4M 512", str(files_a / disk.volume)], check=True)
    # A thin clone: the disk becomes an overlay on a frozen base that the clone shares.
    clone = storage.disk_clone(disk=disk, target_repository=local_a, clone_type="THIN", name=f"clone-{sub}")
    base = clone.backing_disk
    vm = start_on(estate, vm, a)
    shell = SerialShell(a, vm.serial_port)
    shell.wait_for_shell()
    token = uuid.uuid4().hex[:10]
    shell.run(f"echo DISK-{token} | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null")
    uptime = float(shell.run("cut -d' ' -f1 /proc/uptime"))
    shell.close()
    overlay = disk.__class__.objects.get(pk=disk.pk).volume

    # 1. a -> b through the API: the disk copied into b's local repository, a's overlay gone.
    client = APIClient()
    client.force_authenticate(user)
    response = client.post(f"/api/v1/vms/{vm.pk}/migrate/", {"target_server": b.pk}, format="json")
    assert response.status_code == 202, response.content
    job = ok(Job.objects.get(pk=response.json()["id"]))
    assert job.result["disks_copied"] == 1 and "journal" not in job.result
    vm.refresh_from_db()
    disk.refresh_from_db()
    assert (vm.server_id, vm.status, vm.repository_id) == (b.pk, "RUNNING", local_b.pk)
    assert disk.repository_id == local_b.pk and disk.backing_disk_id is None
    assert (files_b / overlay).exists() and not (files_a / overlay).exists()
    # The base stays, its other clone on it; the copy is standalone.
    assert VirtualDisk.objects.filter(pk=base.pk).exists() and (files_a / base.volume).exists()
    info = subprocess.run(
        ["qemu-img", "info", "-U", str(files_b / overlay)], capture_output=True, text=True, check=True
    ).stdout
    assert "backing file" not in info
    assert _migrate_and_check(b, vm, token) == "BBBBBBBB"

    # 2. b -> a: libvirt reports an error after the guest arrived (a lost confirmation).
    real = MigrationMixin.migrate_with_storage

    def arrives_then_fails(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise OperationFailed("connection to the source lost during confirmation")

    monkeypatch.setattr(MigrationMixin, "migrate_with_storage", arrives_then_fails)
    job = ok(vm_migration.vm_migrate(vm=vm, user=user, target_server=a))
    assert "it arrived" in job.log
    vm.refresh_from_db()
    disk.refresh_from_db()
    assert (vm.server_id, vm.status, disk.repository_id) == (a.pk, "RUNNING", local_a.pk)
    assert (files_a / overlay).exists() and not (files_b / overlay).exists()
    assert _migrate_and_check(a, vm, token) == "BBBBBBBB"

    # 3. a -> b refused by libvirt before anything moved: b's new volume goes, the guest stays.
    def refuses(self, *args, **kwargs):
        raise OperationFailed("internal error: injected before the migration")

    monkeypatch.setattr(MigrationMixin, "migrate_with_storage", refuses)
    job = vm_migration.vm_migrate(vm=vm, user=user, target_server=b)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "injected" in job.error
    assert entries(job) == []
    vm.refresh_from_db()
    assert (vm.server_id, vm.status) == (a.pk, "RUNNING")
    assert (files_a / overlay).exists() and not (files_b / overlay).exists()
    shell = SerialShell(a, vm.serial_port)
    shell.wait_for_shell(timeout=30)
    assert float(shell.run("cut -d' ' -f1 /proc/uptime")) > uptime  # the same guest, never restarted
    shell.close()
