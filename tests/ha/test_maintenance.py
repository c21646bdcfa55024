"""Server maintenance: MAINTENANCE until taken out, no VM placed there, running VMs migrated
away one after another by one parent job (pinned and stopped VMs stay)."""

import pytest

from ovmweb.errors import Conflict
from ovmweb.inventory.services import maintenance, placement
from ovmweb.jobs.models import Event, Job
from ovmweb.jobs.runner import run_job
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def estate(db):
    pool = f.ServerPoolFactory()
    repo = f.RepositoryFactory(server_pools=[pool])
    a = f.ServerFactory(server_pool=pool, name="srv-a")
    b = f.ServerFactory(server_pool=pool, name="srv-b")
    return {"pool": pool, "repo": repo, "a": a, "b": b}


def vm_on(estate, server, name, status="RUNNING", **fields):
    return f.VirtualMachineFactory(
        server_pool=estate["pool"], repository=estate["repo"], server=server, status=status, name=name, **fields
    )


def test_maintenance_migrates_running_vms_one_after_another(estate, admin_user):
    a, b = estate["a"], estate["b"]
    first, second = vm_on(estate, a, "vm-1"), vm_on(estate, a, "vm-2")
    pinned = vm_on(estate, a, "vm-pinned", cpu_pinning="0")
    stopped = vm_on(estate, a, "vm-stopped", status="STOPPED")
    job = maintenance.server_set_maintenance(server=a, user=admin_user, on=True)
    a.refresh_from_db()
    assert a.status == "MAINTENANCE" and job.operation == "server.evacuate"
    # Nothing new is placed on a server in maintenance.
    assert "MAINTENANCE" in placement.refusal(vm=stopped, server=a)
    assert placement.choose_server(vm=stopped) == b

    run_job(job.pk)  # the parent only: it plans the children
    children = list(Job.objects.filter(parent=job).order_by("pk"))
    assert [c.params["vm_id"] for c in children] == [first.pk, second.pk]
    assert all(c.operation == "vm.migrate" and c.params["target_server_id"] == b.pk for c in children)
    # Serial (7.7): the second waits for the first.
    assert children[0].params["after_job_id"] is None and children[1].params["after_job_id"] == children[0].pk
    assert "pinned" in Event.objects.filter(object_id=pinned.pk, type="server.maintenance").get().text
    assert not Job.objects.filter(parent=job, params__vm_id=stopped.pk).exists()

    maintenance.server_set_maintenance(server=a, user=admin_user, on=False)
    a.refresh_from_db()
    assert a.status == "RUNNING" and placement.refusal(vm=stopped, server=a) is None


def test_only_a_running_server_enters_and_rediscovery_keeps_maintenance(estate, admin_user):
    from ovmweb.hypervisor.base import HostFacts
    from ovmweb.inventory.services.servers import server_record_facts

    a = estate["a"]
    a.status = "UNREACHABLE"
    a.save()
    with pytest.raises(Conflict, match="only a running server"):
        maintenance.server_set_maintenance(server=a, user=admin_user, on=True)
    with pytest.raises(Conflict, match="not in maintenance"):
        maintenance.server_set_maintenance(server=a, user=admin_user, on=False)
    a.status, a.maintenance = "MAINTENANCE", True
    a.save()
    facts = HostFacts(
        hostname="h",
        host_uuid="u",
        cpu_vendor="v",
        cpu_family=6,
        cpu_model=1,
        cpu_model_name="m",
        cpu_cores=2,
        memory_mib=1024,
        libvirt_version="9.0.0",
        qemu_version="7.2.0",
        domain_types=["qemu"],
    )
    server_record_facts(server=a, facts=facts, disk_leases=True)
    a.refresh_from_db()
    assert a.status == "MAINTENANCE" and a.disk_leases


def test_a_server_in_maintenance_that_was_unreachable_comes_back_in_maintenance(estate, admin_user):
    """Not RUNNING: nothing may be placed there until an administrator takes it out."""
    from ovmweb.inventory.services.servers import server_mark_reachable, server_mark_unreachable

    a = estate["a"]
    maintenance.server_set_maintenance(server=a, user=admin_user, on=True)
    server_mark_unreachable(server=a, error="no route to host")
    a.refresh_from_db()
    assert a.status == "UNREACHABLE"
    server_mark_reachable(server=a)
    a.refresh_from_db()
    assert a.status == "MAINTENANCE"
    stopped = vm_on(estate, estate["b"], "vm-s", status="STOPPED")
    assert "MAINTENANCE" in placement.refusal(vm=stopped, server=a)

    # Taken out while unreachable: it answers as RUNNING.
    server_mark_unreachable(server=a, error="no route to host")
    maintenance.server_set_maintenance(server=a, user=admin_user, on=False)
    a.refresh_from_db()
    assert a.status == "UNREACHABLE" and not a.maintenance
    server_mark_reachable(server=a)
    a.refresh_from_db()
    assert a.status == "RUNNING"


def test_move_target_keeps_the_inbound_lock_and_anti_affinity(estate, admin_user):
    from ovmweb.inventory.services.servers import server_set_inbound_lock

    a, b = estate["a"], estate["b"]
    vm = vm_on(estate, a, "mover")
    assert maintenance.move_target(vm=vm, source=a) == (b, "")
    server_set_inbound_lock(server=b, user=admin_user, locked=True)
    target, why = maintenance.move_target(vm=vm, source=a)
    assert target is None and "inbound migration lock" in why
    server_set_inbound_lock(server=b, user=admin_user, locked=False)
    group = f.AntiAffinityGroupFactory(server_pool=estate["pool"])
    group.vms.set([vm, vm_on(estate, b, "partner")])
    target, why = maintenance.move_target(vm=vm, source=a)
    assert target is None and "anti-affinity" in why
