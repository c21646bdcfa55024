"""HA failover in the monitor (ovmweb/monitor/ha.py) on libvirt's test:///default driver:
which VMs are restarted, where, with which events; a held lease retried; a lost server
coming back reconciled by UUID."""

import pytest

from ovmweb.errors import OperationFailed
from ovmweb.hypervisor.base import DomainInfo, PowerState
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services import servers as server_services
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.monitor.ha import HaFailover
from tests import factories as f

pytestmark = [pytest.mark.usefixtures("libvirt_test_driver"), pytest.mark.django_db]


@pytest.fixture
def estate(db, settings):
    settings.OVMWEB_HA_RETRY = 0
    pool = f.ServerPoolFactory()
    repo = f.RepositoryFactory(server_pools=[pool])
    a = f.ServerFactory(server_pool=pool, name="srv-a", disk_leases=True, memory_mib=4096)
    b = f.ServerFactory(server_pool=pool, name="srv-b", disk_leases=True, memory_mib=4096)
    return {"pool": pool, "repo": repo, "a": a, "b": b}


def running_vm(estate, *, ha=True, name=None, **fields):
    vm = f.VirtualMachineFactory(
        server_pool=estate["pool"],
        repository=estate["repo"],
        server=estate["a"],
        status="RUNNING",
        ha_enabled=ha,
        memory_mib=256,
        max_memory_mib=256,
        **({"name": name} if name else {}),
        **fields,
    )
    f.VmDiskSlotFactory(vm=vm, slot=0)
    return vm


def lose_a(ha, estate, *, failing=None):
    """Server a unreachable past OVMWEB_SERVER_OFFLINE_AFTER, as the monitor handles it."""
    a = estate["a"]
    ha.server_failing(a, failing_for=60, offline_after=30)
    server_services.server_mark_unreachable(server=a, error="no route to host")
    ha.step(failing=failing if failing is not None else {a.pk})


def finish(ha, estate):
    run_pending_jobs()
    ha.step(failing={estate["a"].pk})


def test_ha_vm_restarts_on_another_server_and_non_ha_stays_offline(estate):
    ha = HaFailover()
    vm, plain = running_vm(estate, name="ha-vm"), running_vm(estate, ha=False, name="plain")
    lose_a(ha, estate)
    job = Job.objects.get(operation="vm.start")
    assert job.params["ha_failover"] is True and job.params["server_id"] == estate["b"].pk
    finish(ha, estate)
    vm.refresh_from_db()
    plain.refresh_from_db()
    assert (vm.status, vm.server_id) == ("RUNNING", estate["b"].pk)
    assert plain.status == "STOPPED" and plain.server_id == estate["a"].pk
    assert Event.objects.filter(object_id=plain.pk, type="vm.offline").exists()
    restarted = Event.objects.get(object_id=vm.pk, type="vm.ha_restarted")
    assert "srv-a" in restarted.text and "srv-b" in restarted.text
    assert not ha.busy
    assert Job.objects.filter(operation="vm.start").count() == 1  # the non-HA VM was not started


def test_failover_overrides_inbound_lock_and_hugepages_but_not_anti_affinity(estate):
    b = estate["b"]
    server_services.server_set_inbound_lock(server=b, user=None, locked=True)
    f.VirtualMachineFactory(
        server_pool=estate["pool"], server=b, status="RUNNING", huge_pages=True, memory_mib=256, max_memory_mib=256
    )
    ha = HaFailover()
    vm = running_vm(estate)
    lose_a(ha, estate)
    finish(ha, estate)
    vm.refresh_from_db()
    assert (vm.status, vm.server_id) == ("RUNNING", b.pk)

    # Anti-affinity holds even for HA: the partner on b keeps it off b.
    partner = VirtualMachine.objects.get(server=b, huge_pages=True)
    other = running_vm(estate, name="other")
    group = f.AntiAffinityGroupFactory(server_pool=estate["pool"])
    group.vms.set([partner, other])
    ha2 = HaFailover()
    lose_a(ha2, estate)
    other.refresh_from_db()
    assert other.status == "STOPPED" and ha2.busy
    event = Event.objects.filter(object_id=other.pk, type="vm.ha").latest("id")
    assert "anti-affinity" in event.text and "srv-a" in event.text


def test_memory_is_honoured(estate):
    estate["b"].memory_mib = 128
    estate["b"].save()
    ha = HaFailover()
    vm = running_vm(estate)
    lose_a(ha, estate)
    vm.refresh_from_db()
    assert vm.status == "STOPPED" and not Job.objects.filter(operation="vm.start").exists()
    assert "MiB free" in Event.objects.filter(object_id=vm.pk, type="vm.ha").latest("id").text


def test_qemu_gone_is_lost_at_once_and_a_live_guest_is_not(estate, monkeypatch):
    from ovmweb.inventory.services import leases

    ha = HaFailover()
    gone, alive = running_vm(estate, name="gone"), running_vm(estate, name="alive")
    monkeypatch.setattr(leases, "running_guests", lambda server: {str(alive.uuid)})
    ha.server_failing(estate["a"], failing_for=1, offline_after=30)
    gone.refresh_from_db()
    alive.refresh_from_db()
    assert gone.status == "STOPPED" and gone.vnc_port is None
    assert "QEMU" in Event.objects.filter(object_id=gone.pk, type="vm.offline").latest("id").text
    assert alive.status == "RUNNING" and set(ha.lost) == {gone.pk}
    # The server itself does not answer: nothing is decided before OFFLINE_AFTER.
    monkeypatch.setattr(leases, "running_guests", lambda server: None)
    ha.server_failing(estate["a"], failing_for=1, offline_after=30)
    alive.refresh_from_db()
    assert alive.status == "RUNNING" and set(ha.lost) == {gone.pk}


def test_kill_user_stop_and_guest_shutdown_are_not_restarted(estate):
    from ovmweb.inventory.services.vms import vm_action

    killed, stopped = running_vm(estate, name="killed"), running_vm(estate, name="stopped")
    vm_action(vm=killed, action="kill", user=None)
    killed.refresh_from_db()
    assert killed.ha_enabled is False  # seed 7.8: KILL clears HA
    stopped.status = "STOPPED"  # stopped by its user (or by its own guest) before the loss
    stopped.save()
    ha = HaFailover()
    lose_a(ha, estate)
    assert not ha.busy
    assert not Job.objects.filter(operation="vm.start").exists()


def test_pool_without_leases_is_not_failed_over(estate):
    estate["b"].disk_leases = False
    estate["b"].save()
    ha = HaFailover()
    vm = running_vm(estate)
    lose_a(ha, estate)
    assert not Job.objects.filter(operation="vm.start").exists()
    assert "no disk leases" in Event.objects.filter(object_id=vm.pk, type="vm.ha").latest("id").text


def test_held_lease_is_retried_until_it_frees(estate, monkeypatch):
    from ovmweb.hypervisor.libvirt import LibvirtDriver

    real_start = LibvirtDriver.start

    def busy(self, uuid):
        raise OperationFailed("resource busy: Lockspace resource 'abc' is locked")

    monkeypatch.setattr(LibvirtDriver, "start", busy)
    ha = HaFailover()
    vm = running_vm(estate)
    lose_a(ha, estate)
    for _round in range(3):
        finish(ha, estate)  # each failed try is followed by the next one
    run_pending_jobs()
    vm.refresh_from_db()
    assert vm.status == "STOPPED" and ha.busy
    assert Job.objects.filter(operation="vm.start", status="FAILURE").count() == 4
    held = Event.objects.filter(object_id=vm.pk, type="vm.start_failed").latest("id")
    assert "lease is held" in held.text and vm.disk_slots.get().virtual_disk.name in held.text
    # One HA event for the repeated reason, not one per try.
    assert Event.objects.filter(object_id=vm.pk, type="vm.ha", text__contains="still in use").count() == 1
    monkeypatch.setattr(LibvirtDriver, "start", real_start)
    ha.step(failing={estate["a"].pk})  # the next try
    finish(ha, estate)
    vm.refresh_from_db()
    assert vm.status == "RUNNING" and not ha.busy


def test_server_back_adopts_a_guest_it_still_runs_and_never_records_two(estate):
    ha = HaFailover()
    a, b = estate["a"], estate["b"]
    # A failed HA try left the VM STOPPED, recorded on b; a still runs the guest.
    stranded = running_vm(estate, name="stranded")
    stranded.status, stranded.server = "STOPPED", b
    stranded.save()
    ha.lost[stranded.pk] = None  # only its removal is checked
    # Recorded RUNNING on b, but a reports it running too (no leases on some server, say).
    twice = running_vm(estate, name="twice")
    twice.server = b
    twice.save()
    domains = {
        str(vm.uuid): DomainInfo(uuid=str(vm.uuid), name=vm.name, state=PowerState.RUNNING) for vm in (stranded, twice)
    }
    ha.server_back(a, domains)
    ha.server_back(a, domains)
    stranded.refresh_from_db()
    twice.refresh_from_db()
    assert (stranded.status, stranded.server_id) == ("RUNNING", a.pk) and stranded.pk not in ha.lost
    assert "found by its UUID" in Event.objects.filter(object_id=stranded.pk, type="vm.ha").latest("id").text
    assert (twice.status, twice.server_id) == ("RUNNING", b.pk)
    assert Event.objects.filter(object_id=twice.pk, type="vm.ha_double", severity="CRITICAL").count() == 1


def test_recover_after_a_monitor_restart(estate):
    ha = HaFailover()
    vm = running_vm(estate)
    server_services.server_mark_unreachable(server=estate["a"], error="down")
    HaFailover.recover(ha)
    assert set(ha.lost) == {vm.pk}
