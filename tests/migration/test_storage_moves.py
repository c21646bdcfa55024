"""Moving a VM between repositories and migrating it cold to another pool, for real (seed 7.7).

Server a is in pool one, server b in pool two. The tiny guest lives in a's local repository
with a data disk, a shareable disk and its ISO there; markers written inside the guest on
both disks. Moved to a shared repository: the data disk is moved (its original gone), the
shareable disk and the ISO are copied (originals kept). Migrated cold to pool two: refused
while that pool cannot see the repository, accepted once it can; started there (on b), the
guest boots from the copied ISO and reads both markers."""

import random
import subprocess
import uuid
from pathlib import Path

import pytest

from ovmweb.errors import Conflict
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import IsoFile, Repository, VirtualDisk, VirtualMachine
from ovmweb.inventory.services import pools, repositories, storage, vm_copies, vm_migration, vms
from ovmweb.inventory.services.repositories import pool_name
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels import pool as tunnel_pool

from .conftest import GUEST_ISO, SerialShell, discover, ok

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

MIB = 1 << 20


@pytest.fixture
def two_pools(admin_user, endpoints, settings):
    settings.OVMWEB_HYPERVISOR_URI = ""
    settings.OVMWEB_KVM_PROBE_TIMEOUT = 2
    # Console ports of this test's own: another test's guest may hold the first ones on a.
    settings.OVMWEB_VNC_PORT_BASE = random.randrange(20000, 29000, 100)
    settings.OVMWEB_SERIAL_PORT_BASE = settings.OVMWEB_VNC_PORT_BASE + 50
    sub = uuid.uuid4().hex[:8]
    one = pools.server_pool_create(user=admin_user, name=f"one-{sub}")
    two = pools.server_pool_create(user=admin_user, name=f"two-{sub}")
    a = discover(user=admin_user, endpoints=endpoints, key="a", pool=one)
    b = discover(user=admin_user, endpoints=endpoints, key="b", pool=two)
    (Path(endpoints["shared_path"]) / sub).mkdir()
    (Path(endpoints["local_backing"]["a"]) / sub).mkdir()
    shared = Repository.objects.get(
        pk=ok(
            repositories.repository_create(
                user=admin_user,
                name=f"shared-{sub}",
                kind="SHARED",
                path=f"{endpoints['shared_path']}/{sub}",
                server_pools=[one],
            )
        ).target_id
    )
    local = Repository.objects.get(
        pk=ok(
            repositories.repository_create(
                user=admin_user,
                name=f"local-{sub}",
                kind="LOCAL",
                path=f"{endpoints['local_path']}/{sub}",
                server=a,
                server_pools=[one],
            )
        ).target_id
    )
    with open(GUEST_ISO, "rb") as fh:
        ok(
            storage.iso_upload(
                repository=local, user=admin_user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size
            )
        )
    yield {
        "one": one,
        "two": two,
        "a": a,
        "b": b,
        "shared": shared,
        "local": local,
        "user": admin_user,
        "local_files": Path(endpoints["local_backing"]["a"]) / sub,
        "shared_files": Path(shared.path),
    }
    for vm in VirtualMachine.objects.all():
        for server in (a, b):
            for step in ("destroy", "undefine"):
                try:
                    getattr(connections.driver_for(server), step)(str(vm.uuid))
                except Exception:  # absent there: nothing to clean
                    pass
    connections.close_all()
    tunnel_pool.close_all()


def _shell(server, vm) -> SerialShell:
    shell = SerialShell(server, vm.serial_port)
    shell.wait_for_shell()
    return shell


def test_move_copies_shared_disks_and_isos_and_the_vm_boots_in_another_pool(two_pools):
    s = two_pools
    user, local, shared = s["user"], s["local"], s["shared"]
    vm = vms.vm_create(
        user=user,
        name=f"mv-{uuid.uuid4().hex[:6]}",
        server_pool=s["one"],
        repository=local,
        domain_type="PVHVM",
        os_type="OTHER_LINUX",
        memory_mib=192,
        max_memory_mib=192,
        source={"kind": "iso", "iso": IsoFile.objects.get(repository=local)},
        disks=[
            {"new": {"name": "data", "size_bytes": 16 * MIB, "repository": local}},
            {"new": {"name": "common", "size_bytes": 16 * MIB, "repository": local}},
        ],
        boot_order=["cdrom", "disk"],
    )
    run_pending_jobs()
    data, common = [slot.virtual_disk for slot in vm.disk_slots.filter(kind="DISK").order_by("slot")]
    # A shareable disk is raw (libvirt shares raw images only).
    image = s["local_files"] / "VirtualDisks" / common.volume
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), f"{image}.raw"], check=True)
    Path(f"{image}.raw").rename(image)
    VirtualDisk.objects.filter(pk=common.pk).update(shareable=True, format="raw")
    storage.repository_driver(local).pool_refresh(pool_name(local, "disks"))  # libvirt probes the new header
    ok(vms.vm_action(vm=vm, action="start", user=user))
    vm.refresh_from_db()
    token = uuid.uuid4().hex[:10]
    shell = _shell(s["a"], vm)
    shell.run(f"echo DATA-{token} | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null")
    shell.run(f"echo COMMON-{token} | dd of=/dev/vdb bs=512 seek=2048 conv=fsync 2>/dev/null")
    shell.close()
    ok(vms.vm_action(vm=vm, action="kill", user=user))

    # Moved to the shared repository: data moved, the shareable disk and the ISO copied.
    job = ok(vm_copies.vm_move(vm=vm, user=user, target_repository=shared))
    assert job.result["isos_copied"] == 1 and "journal" not in job.result
    vm.refresh_from_db()
    assert vm.repository_id == shared.pk
    slots = {slot.slot: slot for slot in vm.disk_slots.select_related("virtual_disk", "iso")}
    disks = [slot.virtual_disk for slot in slots.values() if slot.virtual_disk_id]
    assert {d.repository_id for d in disks} == {shared.pk}
    assert not VirtualDisk.objects.filter(pk=data.pk).exists()
    assert not (s["local_files"] / "VirtualDisks" / data.volume).exists()
    assert VirtualDisk.objects.filter(pk=common.pk).exists()  # copied, not moved
    assert {d.format for d in disks if d.shareable} == {"raw"}
    assert (s["local_files"] / "VirtualDisks" / common.volume).exists()
    iso = next(slot.iso for slot in slots.values() if slot.iso_id)
    assert iso.repository_id == shared.pk and (s["shared_files"] / "ISOs" / "tiny.iso").exists()
    assert IsoFile.objects.filter(repository=local, name="tiny.iso").exists()

    # Cold migration to pool two: refused while it cannot see the repository.
    with pytest.raises(Conflict, match="not presented to that pool"):
        vm_migration.vm_migrate(vm=vm, user=user, target_pool=s["two"])
    ok(repositories.repository_present(repository=shared, server_pool=s["two"], user=user))
    ok(vm_migration.vm_migrate(vm=vm, user=user, target_pool=s["two"]))
    vm.refresh_from_db()
    assert (vm.server_pool_id, vm.server_id) == (s["two"].pk, None)
    ok(vms.vm_action(vm=vm, action="start", user=user))
    vm.refresh_from_db()
    assert (vm.status, vm.server_id) == ("RUNNING", s["b"].pk)
    shell = _shell(s["b"], vm)
    try:
        assert shell.run("dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -n1") == f"DATA-{token}"
        assert shell.run("dd if=/dev/vdb bs=512 skip=2048 count=1 2>/dev/null | head -n1") == f"COMMON-{token}"
    finally:
        shell.close()
    ok(vms.vm_action(vm=vm, action="kill", user=user))
