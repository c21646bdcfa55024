"""Console ports of VMs on their server: VNC 10000+n, serial 7900+n, one n per VM
per server (seed 7.11; unique by database constraint)."""
from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ..exceptions import Conflict
from ..models import Server, VirtualMachine

# 7900+n must stay below the VNC base, so at most this many consoles per server.
MAX_PER_SERVER = 2000
_ATTEMPTS = 10


def allocate_console_ports(*, vm: VirtualMachine, server: Server) -> tuple[int, int]:
    """Give ``vm`` the lowest free n on ``server`` (and record it there). Idempotent."""
    vnc_base, serial_base = settings.OVMWEB_VNC_PORT_BASE, settings.OVMWEB_SERIAL_PORT_BASE
    for _attempt in range(_ATTEMPTS):
        with transaction.atomic():
            # Serialises allocators of one server on PostgreSQL; the unique
            # constraints catch anything else.
            Server.objects.select_for_update().filter(pk=server.pk).first()
            current = VirtualMachine.objects.filter(pk=vm.pk).values("server_id", "vnc_port", "serial_port").get()
            if current["server_id"] == server.pk and current["vnc_port"] is not None:
                vm.server, vm.vnc_port, vm.serial_port = server, current["vnc_port"], current["serial_port"]
                return current["vnc_port"], current["serial_port"]
            n = _free_n(server)
            try:
                with transaction.atomic():
                    VirtualMachine.objects.filter(pk=vm.pk).update(
                        server=server, vnc_port=vnc_base + n, serial_port=serial_base + n
                    )
            except IntegrityError:
                continue
            vm.server, vm.vnc_port, vm.serial_port = server, vnc_base + n, serial_base + n
            return vm.vnc_port, vm.serial_port
    raise Conflict(_("Could not allocate console ports on %(s)s; try again.") % {"s": server.name})


def _free_n(server: Server) -> int:
    vnc_base = settings.OVMWEB_VNC_PORT_BASE
    taken = set(VirtualMachine.objects.filter(server=server, vnc_port__isnull=False).values_list("vnc_port", flat=True))
    n = next((i for i in range(MAX_PER_SERVER) if vnc_base + i not in taken), None)
    if n is None:
        raise Conflict(_("Server %(s)s has no free console port left.") % {"s": server.name})
    return n


def free_console_ports(*, server: Server) -> tuple[int, int]:
    """The ports the next allocation on ``server`` would give, without taking them: a live
    migration puts them into the destination definition before the VM is there."""
    n = _free_n(server)
    return settings.OVMWEB_VNC_PORT_BASE + n, settings.OVMWEB_SERIAL_PORT_BASE + n


def move_console_ports(*, vm: VirtualMachine, server: Server, vnc_port: int, serial_port: int) -> tuple[int, int]:
    """Record that ``vm`` now holds these ports on ``server`` (its domain was migrated there
    with them). If another VM took them meanwhile, ``vm`` gets the next free ones recorded."""
    try:
        with transaction.atomic():
            VirtualMachine.objects.filter(pk=vm.pk).update(server=server, vnc_port=vnc_port, serial_port=serial_port)
    except IntegrityError:
        release_console_ports(vm=vm)
        VirtualMachine.objects.filter(pk=vm.pk).update(server=server)
        return allocate_console_ports(vm=vm, server=server)
    vm.server, vm.vnc_port, vm.serial_port = server, vnc_port, serial_port
    return vnc_port, serial_port


def release_console_ports(*, vm: VirtualMachine) -> None:
    """Free the ports when the VM stops or leaves its server (the server stays recorded)."""
    VirtualMachine.objects.filter(pk=vm.pk).update(vnc_port=None, serial_port=None)
    vm.vnc_port = vm.serial_port = None
