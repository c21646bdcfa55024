import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services import placement, ports
from tests import factories as f

pytestmark = pytest.mark.django_db


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as ctx:
        fn()
    return len(ctx.captured_queries)


def test_choose_server_reads_a_constant_number_of_queries(pool, repo):
    """Placement looks at every server of the pool in one query: twenty servers with
    running VMs and an anti-affinity group cost what two do."""
    vm = f.VirtualMachineFactory(server_pool=pool, repository=repo)
    group = f.AntiAffinityGroupFactory(server_pool=pool)
    group.vms.add(vm)

    def grow(n):
        for _ in range(n):
            server = f.ServerFactory(server_pool=pool)
            partner = f.VirtualMachineFactory(
                server_pool=pool, repository=repo, server=server, status=VmStatus.RUNNING, memory_mib=256
            )
            ports.allocate_console_ports(vm=partner, server=server)

    def fresh():
        # As the vm.start operation reads it: with its repository.
        return VirtualMachine.objects.select_related("repository").get(pk=vm.pk)

    grow(2)
    few = _queries(lambda: placement.choose_server(vm=fresh()))
    grow(18)
    many = _queries(lambda: placement.choose_server(vm=fresh()))
    assert few == many == 2  # the VM itself, then every server with its facts
    # The explicit-target check is one query too, and sees the partner's memory.
    server = f.ServerFactory(server_pool=pool, memory_mib=600)
    big = f.VirtualMachineFactory(
        server_pool=pool, repository=repo, server=server, status=VmStatus.RUNNING, memory_mib=200, max_memory_mib=200
    )
    assert big.server == server
    vm = fresh()
    assert _queries(lambda: placement.refusal(vm=vm, server=server)) == 1
    assert "MiB free" in placement.refusal(vm=vm, server=server)
