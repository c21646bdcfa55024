"""Disk leases: discovery's probe, the HA rule on pools (one place: services/pools.py), and a
start refused by a held lease naming the disk, not libvirt's hash."""

import hashlib
import socket

import pytest

from ovmweb.errors import Conflict
from ovmweb.inventory.operations.servers import local_disk_leases
from ovmweb.inventory.services import leases, pools, vms
from ovmweb.inventory.services.vm_devices import disk_path
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_local_probe_needs_lockd_in_qemu_conf_and_a_running_virtlockd(tmp_path):
    etc, run = tmp_path / "etc", tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    assert not local_disk_leases(str(etc), str(run))  # no qemu.conf at all
    (etc / "qemu.conf").write_text('user = "root"\n# lock_manager = "lockd"\n')
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(run / "virtlockd-sock"))
    try:
        assert not local_disk_leases(str(etc), str(run))  # commented out: no leases
        (etc / "qemu.conf").write_text('user = "root"\n  lock_manager = "lockd"\n')
        assert local_disk_leases(str(etc), str(run))
        (run / "virtlockd-sock").unlink()
        assert not local_disk_leases(str(etc), str(run))  # configured, but virtlockd is not running
    finally:
        sock.close()


def test_ha_is_refused_in_a_pool_with_a_server_without_leases(admin_user):
    pool = f.ServerPoolFactory()
    f.ServerFactory(server_pool=pool, disk_leases=True, name="with-leases")
    f.ServerFactory(server_pool=pool, disk_leases=False, name="no-leases")
    vm = f.VirtualMachineFactory(server_pool=pool)
    assert "no-leases" in pools.ha_refusal(pool) and "with-leases" not in pools.ha_refusal(pool)
    with pytest.raises(Conflict, match="no disk leases.*no-leases"):
        vms.vm_update(vm=vm, user=admin_user, ha_enabled=True)
    vm.refresh_from_db()
    assert vm.ha_enabled is False
    # Other edits of the VM are not held back by the rule.
    vms.vm_update(vm=vm, user=admin_user, description="x")
    pool.servers.update(disk_leases=True)
    assert pools.ha_refusal(pool) is None
    vms.vm_update(vm=vm, user=admin_user, ha_enabled=True)
    vm.refresh_from_db()
    assert vm.ha_enabled is True


def test_ha_refused_at_create_and_for_a_vm_without_pool(admin_user):
    pool = f.ServerPoolFactory()
    f.ServerFactory(server_pool=pool, disk_leases=False)
    with pytest.raises(Conflict, match="no disk leases"):
        vms.vm_create(
            user=admin_user,
            name="ha-vm",
            server_pool=pool,
            domain_type="HVM",
            os_type="OTHER_LINUX",
            source={"kind": "none"},
            ha_enabled=True,
        )
    assert pools.ha_refusal(None)


def test_a_held_lease_names_the_disk_by_its_path_hash():
    slot = f.VmDiskSlotFactory()
    other = f.VmDiskSlotFactory(vm=slot.vm)
    path = disk_path(slot.virtual_disk)
    error = (
        "operation failed: starting x: resource busy: Lockspace resource "
        f"'{hashlib.sha256(path.encode()).hexdigest()}' is locked"
    )
    assert leases.held_disks(vm=slot.vm, error=error) == [f"{slot.virtual_disk.name} ({path})"]
    text = leases.lease_refusal_text(vm=slot.vm, error=error)
    assert slot.virtual_disk.name in text and other.virtual_disk.name not in text and "lease is held" in text
    # QEMU's own image lock (same machine) names no lockspace resource: every writable disk.
    qemu = 'Failed to get "write" lock'
    assert len(leases.held_disks(vm=slot.vm, error=qemu)) == 2
    assert leases.held_disks(vm=slot.vm, error="no space left") is None
    assert leases.lease_refusal_text(vm=slot.vm, error="no space left") is None
