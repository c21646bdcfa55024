import pytest
from django.core.exceptions import ValidationError

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine, VmMessage
from ovmweb.inventory.services import placement, ports
from ovmweb.inventory.services.messages import message_value, vm_send_messages
from ovmweb.jobs.models import Job
from tests import factories as f

from .conftest import run_concurrently

pytestmark = pytest.mark.django_db


# 7.10 ------------------------------------------------------------------------


@pytest.fixture
def running_vm(vm):
    VirtualMachine.objects.filter(pk=vm.pk).update(status=VmStatus.RUNNING)
    vm.refresh_from_db()
    return vm


def test_one_job_per_message_and_hidden_values_never_stored(user, running_vm):
    secret = "s3cret-root-pw"
    jobs = vm_send_messages(
        vm=running_vm,
        user=user,
        messages=[
            {"key": "com.oracle.linux.network.device.0", "value": "eth0"},
            {"key": "com.oracle.linux.network.bootproto.0", "value": "dhcp", "log": False},
            {"key": "com.oracle.linux.root-password", "value": secret, "hidden": True},
        ],
    )
    assert len(jobs) == 3 and all(j.operation == "vm.message" for j in jobs)
    rows = {m.key: m for m in VmMessage.objects.all()}
    assert rows["com.oracle.linux.network.device.0"].value == "eth0"
    assert rows["com.oracle.linux.network.bootproto.0"].value == ""  # not logged
    assert rows["com.oracle.linux.root-password"].value == "********"
    # The secret is nowhere in clear in the database rows we wrote.
    for job in Job.objects.all():
        assert secret not in str(job.params)
    assert message_value(jobs[2].params) == secret


def test_message_limits_refuse_everything(user, running_vm):
    with pytest.raises(ValidationError) as exc:
        vm_send_messages(
            vm=running_vm,
            user=user,
            messages=[
                {"key": "ok", "value": "v"},
                {"key": "k" * 257, "value": "v"},
                {"key": "big", "value": "x" * 1025},
            ],
        )
    assert set(exc.value.message_dict) == {"messages[1].key", "messages[2].value"}
    assert not Job.objects.exists() and not VmMessage.objects.exists()
    vm_send_messages(vm=running_vm, user=user, messages=[{"key": "big", "value": "x" * 8192, "log": False}])


def test_messages_only_to_running_vm(user, vm):
    with pytest.raises(Conflict, match="STOPPED"):
        vm_send_messages(vm=vm, user=user, messages=[{"key": "a", "value": "b"}])


# placement (7.12 and friends) ------------------------------------------------


def test_choose_server_prefers_free_memory_and_skips_locked(vm, pool):
    small = f.ServerFactory(server_pool=pool, memory_mib=4096)
    big = f.ServerFactory(server_pool=pool, memory_mib=65536, inbound_migration_lock=True)
    assert placement.choose_server(vm=vm) == small
    assert placement.choose_server(vm=vm, ha_failover=True) == big


def test_choose_server_reasons(vm, pool):
    f.ServerFactory(server_pool=pool, inbound_migration_lock=True)
    f.ServerFactory(server_pool=pool, memory_mib=128)
    f.ServerFactory(server_pool=pool, status="UNREACHABLE")
    with pytest.raises(Conflict) as exc:
        placement.choose_server(vm=vm)
    text = str(exc.value)
    assert "inbound migration lock" in text and "MiB free" in text and "UNREACHABLE" in text


def test_placement_counts_running_vms_memory_and_pending_memory(vm, pool, repo):
    server = f.ServerFactory(server_pool=pool, memory_mib=2048)
    f.VirtualMachineFactory(
        server_pool=pool, server=server, status=VmStatus.RUNNING, memory_mib=1536, max_memory_mib=2048
    )
    assert placement.choose_server(vm=vm) == server  # 512 needed, 512 free
    vm.pending_changes = {"memory_mib": 1024}
    with pytest.raises(Conflict, match="MiB free"):
        placement.choose_server(vm=vm)


def test_local_repository_only_on_its_server(pool):
    a, _b = f.ServerFactory(server_pool=pool), f.ServerFactory(server_pool=pool, memory_mib=10**6)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=f.RepositoryFactory(kind="LOCAL", server=a))
    assert placement.choose_server(vm=vm) == a


def test_shared_repository_must_be_presented_to_the_pool(pool):
    f.ServerFactory(server_pool=pool)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=f.RepositoryFactory())
    with pytest.raises(Conflict, match="not presented"):
        placement.choose_server(vm=vm)


def test_anti_affinity(pool, repo):
    a, b = f.ServerFactory(server_pool=pool, memory_mib=10**6), f.ServerFactory(server_pool=pool)
    group = f.AntiAffinityGroupFactory(server_pool=pool)
    running = f.VirtualMachineFactory(server_pool=pool, repository=repo, server=a, status=VmStatus.RUNNING)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    group.vms.set([running, vm])
    assert placement.choose_server(vm=vm) == b


def test_sparc_vm_not_placed_on_x86_server(pool, repo):
    f.ServerFactory(server_pool=pool)
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo, domain_type="SPARC", os_type="SOLARIS_SPARC")
    with pytest.raises(Conflict, match="domain type SPARC"):
        placement.choose_server(vm=vm)


# ports ------------------------------------------------------------------------


def test_ports_lowest_free_idempotent_and_released(pool, server):
    vms = [f.VirtualMachineFactory(server_pool=pool) for _ in range(3)]
    assert [ports.allocate_console_ports(vm=v, server=server) for v in vms] == [
        (10000, 7900),
        (10001, 7901),
        (10002, 7902),
    ]
    assert ports.allocate_console_ports(vm=vms[0], server=server) == (10000, 7900)
    ports.release_console_ports(vm=vms[1])
    late = f.VirtualMachineFactory(server_pool=pool)
    assert ports.allocate_console_ports(vm=late, server=server) == (10001, 7901)
    other = f.ServerFactory(server_pool=pool)
    assert ports.allocate_console_ports(vm=f.VirtualMachineFactory(server_pool=pool), server=other) == (10000, 7900)


@pytest.mark.django_db(transaction=True)
def test_concurrent_port_allocation_distinct():
    server = f.ServerFactory()
    vms = [f.VirtualMachineFactory(server_pool=server.server_pool) for _ in range(10)]
    results = run_concurrently(lambda v: ports.allocate_console_ports(vm=v, server=server), [(v,) for v in vms])
    assert [e for _r, e in results if e] == []
    assert len({r for r, _e in results}) == 10
