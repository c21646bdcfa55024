"""HA for real, on the two namespaced servers of scripts/two-servers.sh (libvirtd, virtlockd
with a lockspace on the shared directory, sshd each): the monitor and the jobs as in
production, the tiny guest on a shared repository.

- server a's libvirtd and QEMU are killed: the HA VM runs on b, reading the marker it
  wrote on a, and no QEMU of it is left on a; with a back, b in maintenance sends it
  back to a by live migration;
- a is cut off instead (its guest runs on): b does not start it while a's guest holds the
  lease (each try refused, naming the disk); a back, the guest is recorded on a again and
  was never started twice."""

import json
import subprocess
import time
import uuid

import pytest

from ovmweb.hypervisor import connections
from ovmweb.inventory.services import leases, maintenance
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.monitor.service import Monitor
from ovmweb.tunnels import pool as tunnel_pool
from tests.migration.conftest import BASE_DIR, SCRIPT, SerialShell, build_estate, make_vm, start_on

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A state directory of its own: another checkout's migration tests never take these servers down.
VAR = BASE_DIR / "var" / "ha"


def two_servers(*args: str) -> str:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "OVMWEB_VAR_DIR": str(VAR)},
    ).stdout


@pytest.fixture(scope="module")
def endpoints():
    subprocess.run(["bash", str(BASE_DIR / "scripts" / "build-tiny-guest.sh")], check=True, stdout=subprocess.DEVNULL)
    two_servers("up")
    try:
        yield json.loads((VAR / "two-servers" / "servers.json").read_text())
    finally:
        connections.close_all()
        tunnel_pool.close_all()
        two_servers("down")


@pytest.fixture
def estate(admin_user, endpoints, settings):
    yield from build_estate(admin_user, endpoints, settings)


def qemu_of(key: str) -> set[str]:
    """UUIDs of the QEMU processes running on server ``key``, seen from inside it (no SSH)."""
    out = two_servers("sh", key, "sh", "-c", leases._GUESTS_SCRIPT)
    return {m.lower() for m in leases._UUID_ARG.findall(out)}


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run_pending_jobs()
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout} s: {what}")


def ha_vm(estate):
    vm = make_vm(estate, memory_mib=128)
    vm.ha_enabled = True
    vm.save(update_fields=["ha_enabled"])
    return start_on(estate, vm, estate["a"])


def test_server_killed_the_ha_vm_runs_on_the_other_reading_what_it_wrote(estate, settings):
    a, b = estate["a"], estate["b"]
    assert a.disk_leases and b.disk_leases  # discovery saw lockd + virtlockd on both
    vm = ha_vm(estate)
    shell = SerialShell(a, vm.serial_port)
    shell.wait_for_shell()
    token = uuid.uuid4().hex[:10]
    shell.run(f"echo HA-{token} | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null")
    shell.close()

    monitor = Monitor(interval=1, offline_after=30)  # the default: the QEMU check must not wait for it
    monitor.start()
    try:
        time.sleep(1.5)  # subscribed to both servers' events
        two_servers("crash", "a")
        wait_until(lambda: Job.objects.filter(operation="vm.start", params__ha_failover=True).exists(), 25, "HA start")

        def on_b():
            vm.refresh_from_db()
            return vm.status == "RUNNING" and vm.server_id == b.pk

        wait_until(on_b, 40, "the VM RUNNING on b")
        wait_until(lambda: Event.objects.filter(object_id=vm.pk, type="vm.ha_restarted").exists(), 5, "event")
    finally:
        monitor.stop()
    event = Event.objects.get(object_id=vm.pk, type="vm.ha_restarted")
    assert a.name in event.text and b.name in event.text
    assert str(vm.uuid) in qemu_of("b") and str(vm.uuid) not in qemu_of("a")
    shell = SerialShell(b, vm.serial_port)
    shell.wait_for_shell(timeout=60)
    assert shell.run("dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -n1") == f"HA-{token}"
    shell.close()

    # a is back; b enters maintenance: its running VM is live-migrated to a by the evacuation job.
    two_servers("revive", "a")
    job = maintenance.server_set_maintenance(server=b, user=estate["user"], on=True)
    run_pending_jobs()
    job.refresh_from_db()
    vm.refresh_from_db()
    assert job.status == "SUCCESS", (job.error, job.log)
    assert (vm.status, vm.server_id) == ("RUNNING", a.pk)
    assert str(vm.uuid) in qemu_of("a") and str(vm.uuid) not in qemu_of("b")
    b.refresh_from_db()
    assert b.status == "MAINTENANCE"


def test_server_cut_off_its_guest_keeps_the_lease_and_is_never_run_twice(estate, settings):
    settings.OVMWEB_HA_RETRY = 1
    a = estate["a"]
    vm = ha_vm(estate)
    monitor = Monitor(interval=1, offline_after=2)
    monitor.start()
    try:
        time.sleep(1.5)
        two_servers("cut", "a")
        # a unreachable: the VM is OFFLINE, HA tries b, each try refused by the held disk.
        wait_until(
            lambda: Job.objects.filter(operation="vm.start", status="FAILURE").count() >= 2, 40, "two refused tries"
        )
        assert str(vm.uuid) in qemu_of("a") and str(vm.uuid) not in qemu_of("b")
        refused = Event.objects.filter(object_id=vm.pk, type="vm.start_failed").latest("id")
        assert "lease is held" in refused.text and "/VirtualDisks/" in refused.text, refused.text
        assert Event.objects.filter(object_id=vm.pk, type="vm.ha", text__contains="still in use").exists()
        two_servers("restore", "a")

        def back_on_a():
            vm.refresh_from_db()
            return vm.status == "RUNNING" and vm.server_id == a.pk

        wait_until(back_on_a, 40, "the VM recorded on a again")
    finally:
        monitor.stop()
        two_servers("restore", "a") if not (VAR / "two-servers" / "run" / "socat-a.pid").exists() else None
    run_pending_jobs()
    assert not Job.objects.filter(operation="vm.start", params__ha_failover=True, status="SUCCESS").exists()
    assert str(vm.uuid) in qemu_of("a") and str(vm.uuid) not in qemu_of("b")
