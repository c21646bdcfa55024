"""Live migration for real: two libvirt+QEMU servers on this machine (each in its own
network/mount/UTS namespace, its own libvirtd and sshd), discovered over SSH into one
pool, the tiny guest on a shared repository, migrated through the API and the jobs."""

import time
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from ovmweb.errors import Conflict
from ovmweb.hypervisor import connections
from ovmweb.inventory.models import IsoFile, Repository, VirtualMachine
from ovmweb.inventory.services import repositories, servers, storage, vm_migration
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.monitor.service import Monitor

from .conftest import GUEST_ISO, SerialShell, StatusWatcher, make_vm, ok, start_on

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _domains(server) -> dict:
    return {d.uuid: d.state.value for d in connections.driver_for(server).list_domains()}


def test_live_migration_keeps_the_guest_running(estate):
    a, b, user = estate["a"], estate["b"], estate["user"]
    assert a.host_uuid and b.host_uuid and a.host_uuid != b.host_uuid
    vm = start_on(estate, make_vm(estate), a)
    source_ports = (vm.vnc_port, vm.serial_port)

    shell = SerialShell(a, vm.serial_port)
    shell.wait_for_shell()
    token = uuid.uuid4().hex[:10]
    # A marker in the guest's RAM (tmpfs) and on its disk in the shared repository, and a
    # counter that only a running guest advances.
    shell.run(f"echo RAM-{token} > /tmp/marker")
    shell.run(f"echo DISK-{token} | dd of=/dev/vda bs=512 seek=2048 conv=fsync 2>/dev/null")
    shell.run("(i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done) >/dev/null 2>&1 & true")
    uptime_before = float(shell.run("cut -d' ' -f1 /proc/uptime"))
    shell.close()

    # The monitor runs as in production (domain events of both servers, periodic
    # reconcile): the domain vanishing from a must not make the VM look STOPPED.
    monitor = Monitor(interval=1, offline_after=60)
    monitor.start()
    watcher = StatusWatcher(vm.pk)
    watcher.start()
    try:
        client = APIClient()
        client.force_authenticate(user)
        response = client.post(f"/api/v1/vms/{vm.pk}/migrate/", {"target_server": b.pk}, format="json")
        assert response.status_code == 202, response.content
        job = Job.objects.get(pk=response.json()["id"])
        assert job.operation == "vm.migrate"
        ok(job)
        time.sleep(3)  # a few monitor rounds and events after the move
    finally:
        watcher.stop()
        monitor.stop()

    vm.refresh_from_db()
    assert vm.server_id == b.pk and vm.status == "RUNNING"
    assert set(watcher.seen) == {"RUNNING"}, watcher.seen
    assert watcher.servers[0] == a.pk and watcher.servers[-1] == b.pk
    assert vm.vnc_port is not None and vm.serial_port is not None
    # The domain is on b only, defined there persistently, gone from a.
    assert _domains(b).get(str(vm.uuid)) == "running"
    assert str(vm.uuid) not in _domains(a)
    definition = connections.driver_for(b).domain_xml(str(vm.uuid))
    assert f"port='{vm.vnc_port}'" in definition or f'port="{vm.vnc_port}"' in definition

    job.refresh_from_db()
    assert job.progress == 100
    # Progress and the final figures came from libvirt's job statistics.
    assert "MiB of" in job.log and "MiB sent in" in job.log, job.log
    assert job.result["server_id"] == b.pk
    assert job.result["downtime_ms"] > 0 and job.result["time_elapsed_ms"] > 0
    assert (job.result["vnc_port"], job.result["serial_port"]) == (vm.vnc_port, vm.serial_port)
    events = Event.objects.filter(object_id=vm.pk, job=job)
    assert events.filter(type="vm.migrated", text__contains=b.name).exists()
    assert events.filter(type="vm.placement").exists()
    assert not Event.objects.filter(
        object_id=vm.pk, type__in=["vm.offline", "vm.state"], created_at__gte=job.started_at, text__icontains="stopped"
    ).exists()

    # Same guest on b's serial port: RAM and disk markers there, counter and uptime went on.
    shell = SerialShell(b, vm.serial_port)
    shell.wait_for_shell(timeout=30)
    assert shell.run("cat /tmp/marker") == f"RAM-{token}"
    assert shell.run("dd if=/dev/vda bs=512 skip=2048 count=1 2>/dev/null | head -n1") == f"DISK-{token}"
    assert float(shell.run("cut -d' ' -f1 /proc/uptime")) > uptime_before
    count = int(shell.run("cat /tmp/count"))
    assert int(shell.run("sleep 1; cat /tmp/count")) > count
    shell.close()
    # a's console ports are free again: nothing listens there any more.
    assert not connections.driver_for(a).list_domains()
    assert source_ports[0] not in VirtualMachine.objects.filter(server=a).values_list("vnc_port", flat=True)


def test_rules_refuse_and_a_refused_job_leaves_the_guest_where_it_runs(estate):
    """Refused on the real pair: a VM with a local ISO, a CPU-pinned VM, a target under the
    inbound migration lock (at submit, and when set while the job waits in the queue)."""
    a, b, user, endpoints = estate["a"], estate["b"], estate["user"], estate["endpoints"]
    client = APIClient()
    client.force_authenticate(user)

    # A local repository of a: the same path exists on b, but holds b's own (empty) directory.
    (Path(endpoints["local_backing"]["a"]) / "repo").mkdir()
    (Path(endpoints["local_backing"]["b"]) / "repo").mkdir()
    job = ok(
        repositories.repository_create(
            user=user,
            name="local-a",
            kind="LOCAL",
            path=f"{endpoints['local_path']}/repo",
            server=a,
            server_pools=[estate["pool"]],
        )
    )
    local = Repository.objects.get(pk=job.target_id)
    with open(GUEST_ISO, "rb") as fh:
        ok(storage.iso_upload(repository=local, user=user, name="tiny.iso", fileobj=fh, size=GUEST_ISO.stat().st_size))
    assert (Path(endpoints["local_backing"]["a"]) / "repo" / "ISOs" / "tiny.iso").exists()
    assert not (Path(endpoints["local_backing"]["b"]) / "repo" / "ISOs" / "tiny.iso").exists()
    with_local_iso = start_on(
        estate, make_vm(estate, memory_mib=128, with_disk=False, iso=IsoFile.objects.get(repository=local)), a
    )
    response = client.post(f"/api/v1/vms/{with_local_iso.pk}/migrate/", {"target_server": b.pk}, format="json")
    assert response.status_code == 409, response.content
    assert "local repository" in response.content.decode()

    pinned = start_on(estate, make_vm(estate, memory_mib=128, with_disk=False, cpu_pinning="0"), a)
    assert "vcpupin" in connections.driver_for(a).domain_xml(str(pinned.uuid))
    with pytest.raises(Conflict, match="pinned"):
        vm_migration.vm_migrate(vm=pinned, user=user, target_server=b)

    plain = start_on(estate, make_vm(estate, memory_mib=128, with_disk=False), a)
    servers.server_set_inbound_lock(server=b, user=user, locked=True)
    response = client.post(f"/api/v1/vms/{plain.pk}/migrate/", {"target_server": b.pk}, format="json")
    assert response.status_code == 409 and "inbound migration lock" in response.content.decode()
    servers.server_set_inbound_lock(server=b, user=user, locked=False)

    # Accepted, then the lock is set before the job runs: the job checks again and refuses.
    job = vm_migration.vm_migrate(vm=plain, user=user, target_server=b)
    servers.server_set_inbound_lock(server=b, user=user, locked=True)
    run_pending_jobs()
    job.refresh_from_db()
    assert job.status == "FAILURE" and "inbound migration lock" in job.error
    for vm in (with_local_iso, pinned, plain):
        vm.refresh_from_db()
        assert (vm.status, vm.server_id) == ("RUNNING", a.pk)
        assert _domains(a).get(str(vm.uuid)) == "running"
    assert not _domains(b)
    assert not Job.objects.filter(operation="vm.migrate", status="SUCCESS").exists()
