import random

import pytest
from django.conf import settings

from ovmweb.errors import Conflict
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services import ports
from tests import factories as f

pytestmark = pytest.mark.django_db


def _hold(vms, server, ns):
    for vm, n in zip(vms, ns, strict=False):
        VirtualMachine.objects.filter(pk=vm.pk).update(
            server=server, vnc_port=settings.OVMWEB_VNC_PORT_BASE + n, serial_port=settings.OVMWEB_SERIAL_PORT_BASE + n
        )


def test_lowest_free_n_is_found_in_any_pattern_of_taken_ports(pool, server):
    """The gap query against the obvious answer: the lowest n not in the taken set."""
    rng = random.Random(7)
    vms = [f.VirtualMachineFactory(server_pool=pool) for _ in range(12)]
    strays = [f.VirtualMachineFactory(server_pool=pool) for _ in range(2)]
    for taken in (
        [],
        [0],
        [1, 2],
        [0, 1, 2, 3],
        [0, 2, 3, 5],
        *[rng.sample(range(14), rng.randint(1, 11)) for _ in range(8)],
    ):
        VirtualMachine.objects.update(server=None, vnc_port=None, serial_port=None)
        _hold(vms, server, taken)
        # Ports outside the range (an older base setting) must not confuse it.
        _hold(strays, server, [-1, ports.MAX_PER_SERVER + 5])
        expected = min(set(range(20)) - set(taken))
        assert ports.free_console_ports(server=server) == (
            settings.OVMWEB_VNC_PORT_BASE + expected,
            settings.OVMWEB_SERIAL_PORT_BASE + expected,
        ), taken


def test_full_server_refuses(pool, server, monkeypatch):
    monkeypatch.setattr(ports, "MAX_PER_SERVER", 3)
    vms = [f.VirtualMachineFactory(server_pool=pool) for _ in range(4)]
    _hold(vms, server, [0, 1, 2])
    with pytest.raises(Conflict, match="no free console port"):
        ports.allocate_console_ports(vm=vms[3], server=server)
    # A VM that holds its ports on the full server still gets them back (idempotent).
    assert ports.allocate_console_ports(vm=vms[2], server=server) == (
        settings.OVMWEB_VNC_PORT_BASE + 2,
        settings.OVMWEB_SERIAL_PORT_BASE + 2,
    )
    VirtualMachine.objects.filter(pk=vms[1].pk).update(vnc_port=None, serial_port=None)
    assert ports.allocate_console_ports(vm=vms[3], server=server) == (
        settings.OVMWEB_VNC_PORT_BASE + 1,
        settings.OVMWEB_SERIAL_PORT_BASE + 1,
    )
