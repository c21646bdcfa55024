"""Console ports of VMs on their server: VNC 10000+n, serial 7900+n, one n per VM
per server (seed 7.11; unique by database constraint)."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

from ..models import Server, VirtualMachine

# 7900+n must stay below the VNC base, so at most this many consoles per server.
MAX_PER_SERVER = 2000
_ATTEMPTS = 10


def allocate_console_ports(*, vm: VirtualMachine, server: Server) -> tuple[int, int]:
    """Give ``vm`` the lowest free n on ``server`` (and record it there). Idempotent."""
    vnc_base, serial_base = settings.OVMWEB_VNC_PORT_BASE, settings.OVMWEB_SERIAL_PORT_BASE
    for _attempt in range(_ATTEMPTS):
        try:
            with transaction.atomic():
                if connection.features.has_select_for_update:
                    # Serialises allocators of one server on PostgreSQL (SQLite's
                    # IMMEDIATE transaction holds the write lock from BEGIN already);
                    # the unique constraints catch anything else.
                    Server.objects.select_for_update().filter(pk=server.pk).values_list("pk", flat=True).first()
                full: Conflict | None = None
                try:
                    n = _free_n(server)
                except Conflict as exc:
                    full, n = exc, None  # unless the VM already holds ports here
                # One conditional UPDATE: a VM that already holds ports on this server keeps them.
                taken = n is not None and (
                    VirtualMachine.objects.filter(pk=vm.pk)
                    .exclude(server=server, vnc_port__isnull=False)
                    .update(server=server, vnc_port=vnc_base + n, serial_port=serial_base + n)
                )
                if not taken:
                    current = (
                        VirtualMachine.objects.filter(pk=vm.pk).values("server_id", "vnc_port", "serial_port").get()
                    )
                    if full is not None and (current["server_id"] != server.pk or current["vnc_port"] is None):
                        raise full
                    vm.server, vm.vnc_port, vm.serial_port = server, current["vnc_port"], current["serial_port"]
                    return current["vnc_port"], current["serial_port"]
        except IntegrityError:
            continue
        vm.server, vm.vnc_port, vm.serial_port = server, vnc_base + n, serial_base + n
        return vm.vnc_port, vm.serial_port
    raise Conflict(_("Could not allocate console ports on %(s)s; try again.") % {"s": server.name})


def _free_n(server: Server) -> int:
    """The lowest free n on ``server``, by one query that reads no port list: 0 if free,
    else one above a taken port whose successor is free (the lowest such).

    Plain SQL on purpose: it runs at every VM start, and the ORM form (a conditional
    aggregate over a correlated EXISTS) costs ten times its run time to compile."""
    vnc_base = settings.OVMWEB_VNC_PORT_BASE
    q = connection.ops.quote_name
    vms, server_col, vnc = q(VirtualMachine._meta.db_table), q("server_id"), q("vnc_port")
    sql = (
        f"SELECT MIN(c.n) FROM (SELECT 0 AS n UNION ALL "  # nosec B608  # identifiers from model _meta through quote_name, every value a bound %s
        f"SELECT t.{vnc} - %s + 1 FROM {vms} t WHERE t.{server_col} = %s AND t.{vnc} >= %s AND t.{vnc} < %s) c "
        f"WHERE NOT EXISTS (SELECT 1 FROM {vms} u WHERE u.{server_col} = %s AND u.{vnc} = %s + c.n)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [vnc_base, server.pk, vnc_base, vnc_base + MAX_PER_SERVER, server.pk, vnc_base])
        n = cursor.fetchone()[0]
    if n is None or n >= MAX_PER_SERVER:
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
