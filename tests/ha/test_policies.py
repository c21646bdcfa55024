"""Pool policies in the monitor: DRS moves one VM that fits elsewhere off a server that
stays over the threshold for the period (never a pinned VM, never against the inbound
lock); DPM only reports."""

import pytest

from ovmweb.inventory.services import pools
from ovmweb.jobs.models import Event, Job
from ovmweb.monitor.policies import PoolPolicies
from tests import factories as f

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def estate(db, admin_user):
    pool = f.ServerPoolFactory()
    pools.server_pool_set_policies(
        pool=pool, user=admin_user, drs_enabled=True, drs_threshold_percent=75, drs_period_s=60
    )
    repo = f.RepositoryFactory(server_pools=[pool])
    a = f.ServerFactory(server_pool=pool, name="srv-a", memory_mib=4096)
    b = f.ServerFactory(server_pool=pool, name="srv-b", memory_mib=4096)
    load = {a.pk: (95.0, 30.0), b.pk: (10.0, 30.0)}
    clock = Clock()
    policies = PoolPolicies(read=lambda server: load.get(server.pk), clock=clock)
    return {"pool": pool, "repo": repo, "a": a, "b": b, "load": load, "clock": clock, "policies": policies}


def vm_on(estate, server, name, **fields):
    return f.VirtualMachineFactory(
        server_pool=estate["pool"],
        repository=estate["repo"],
        server=server,
        status="RUNNING",
        name=name,
        max_memory_mib=4096,
        **fields,
    )


def rounds(estate, *seconds):
    for s in seconds:
        estate["clock"].now += s
        estate["policies"].step([estate["a"], estate["b"]])


def test_drs_migrates_a_vm_that_fits_once_the_period_is_over_and_says_why(estate):
    small, big = vm_on(estate, estate["a"], "small", memory_mib=256), vm_on(estate, estate["a"], "big", memory_mib=1024)
    pinned = vm_on(estate, estate["a"], "pinned", memory_mib=2048, cpu_pinning="0")
    rounds(estate, 0, 30)
    assert not Job.objects.filter(operation="vm.migrate").exists()  # not yet above for 60 s
    rounds(estate, 31)
    job = Job.objects.get(operation="vm.migrate")
    assert job.params["vm_id"] == big.pk and job.params["target_server_id"] == estate["b"].pk  # never the pinned one
    event = Event.objects.get(type="pool.drs", object_id=big.pk)
    assert "CPU load 95%" in event.text and "srv-a" in event.text and "srv-b" in event.text and "75%" in event.text
    rounds(estate, 10)  # one migration of the pool at a time
    assert Job.objects.filter(operation="vm.migrate").count() == 1
    assert {small.pk, pinned.pk}.isdisjoint({j.params["vm_id"] for j in Job.objects.filter(operation="vm.migrate")})


def test_drs_off_below_threshold_or_against_the_inbound_lock(estate, admin_user):
    from ovmweb.inventory.services.servers import server_set_inbound_lock

    vm_on(estate, estate["a"], "x", memory_mib=256)
    estate["load"][estate["a"].pk] = (50.0, 60.0)
    rounds(estate, 0, 100)
    assert not Job.objects.filter(operation="vm.migrate").exists()
    estate["load"][estate["a"].pk] = (50.0, 90.0)  # memory over
    server_set_inbound_lock(server=estate["b"], user=admin_user, locked=True)
    rounds(estate, 0, 100)
    assert not Job.objects.filter(operation="vm.migrate").exists()
    assert "inbound migration lock" in Event.objects.filter(type="pool.drs").latest("id").text
    pools.server_pool_set_policies(pool=estate["pool"], user=admin_user, drs_enabled=False)
    server_set_inbound_lock(server=estate["b"], user=admin_user, locked=False)
    rounds(estate, 100, 100)
    assert not Job.objects.filter(operation="vm.migrate").exists()


def test_dpm_only_reports_once_per_change(estate, admin_user):
    pools.server_pool_set_policies(pool=estate["pool"], user=admin_user, drs_enabled=False, dpm_enabled=True)
    estate["b"].memory_mib = 8192
    estate["b"].save()
    vm_on(estate, estate["a"], "x", memory_mib=1024)
    vm_on(estate, estate["b"], "y", memory_mib=4000)  # fits nowhere else: b stays
    rounds(estate, 0, 10)
    reports = Event.objects.filter(type="pool.dpm")
    assert reports.count() == 1 and "srv-a" in reports.get().text and "srv-b" not in reports.get().text
    assert "IPMI" in reports.get().text
    assert not Job.objects.exists()


def test_policies_are_validated(estate, admin_user):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        pools.server_pool_set_policies(pool=estate["pool"], user=admin_user, drs_threshold_percent=5)
    with pytest.raises(ValidationError):
        pools.server_pool_set_policies(pool=estate["pool"], user=admin_user, name="renamed")
