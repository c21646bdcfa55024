"""A real guest's serial console through ovmweb's consumer and an SSH hop to its server, on
each hop ovmweb has (an OpenSSH master, the default, asyncssh and paramiko): the loopback sshd stands in for
the server's sshd and QEMU's serial port is the far end, so every byte a user types and
reads goes browser side -> consumer -> SSH channel -> QEMU -> the guest's shell and back."""

import uuid

import pytest
from asgiref.sync import async_to_sync

from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.services import vms
from ovmweb.jobs.testing import run_pending_jobs
from ovmweb.tunnels import aiossh, openssh, pool
from tests.consoles import ws
from tests.tunnels.sshd import server_record

from .conftest import started, tiny_vm

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

BANNER = b"ovmweb tiny guest"


async def _read_until(comm, buffer: bytearray, marker: bytes, timeout: float) -> None:
    while marker not in buffer:
        buffer += await comm.receive_from(timeout=timeout)


def _shell_round_trip(user, vm, *, first: bool) -> bytes:
    comm = ws.communicator(f"/ws/console/serial/{vm.pk}/?ticket={ws.issue(user, vm, 'serial')}", ws.headers(user))
    tag = uuid.uuid4().hex[:8]

    async def run():
        connected, _code = await comm.connect(timeout=30)
        assert connected
        buffer = bytearray()
        try:
            if first:  # the guest is still booting: its banner comes down this console
                await _read_until(comm, buffer, BANNER, 240)
            await comm.send_to(bytes_data=f'\necho BEG""IN-{tag}; uname -n; echo EN""D-{tag}\n'.encode())
            await _read_until(comm, buffer, f"END-{tag}".encode(), 60)
        finally:
            await comm.disconnect()
            await aiossh.close_all()
        return bytes(buffer)

    output = async_to_sync(run)()
    return output.split(f"BEGIN-{tag}".encode(), 1)[1]


def test_serial_console_of_a_real_guest_over_each_ssh_hop(estate, ssh_access, settings):
    user = estate["user"]
    vm = started(estate, tiny_vm(estate, "ssh-console"))
    # The same machine, reached as a server over SSH: the console now goes through sshd.
    facts = {**ssh_access, "hostname": "127.0.0.1", "username": "root"}
    over_ssh = server_record(facts, name="over-ssh", server_pool=estate["pool"])
    local = vm.server
    VirtualMachine.objects.filter(pk=vm.pk).update(server=over_ssh)
    vm.refresh_from_db()
    try:
        for hop, first in (("openssh", True), ("asyncssh", False), ("paramiko", False)):
            settings.OVMWEB_CONSOLE_SSH = hop
            output = _shell_round_trip(user, vm, first=first)
            assert b"tinyguest" in output, (hop, output[-300:])
    finally:
        pool.close_all()
        openssh.close_server(over_ssh.pk)
        VirtualMachine.objects.filter(pk=vm.pk).update(server=local)
        vm.refresh_from_db()
        vms.vm_action(vm=vm, action="kill", user=user)
        run_pending_jobs()
