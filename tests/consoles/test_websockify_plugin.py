import socket

import pytest

from ovmweb.consoles.websockify_plugin import TicketRefused, TicketTokenPlugin
from tests.consoles import ws

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def plugin(settings):
    return TicketTokenPlugin(None)


def test_local_server_target(plugin, operator, local_server, running_vm, make_target):
    vm = running_vm(local_server, make_target("echo").port)
    token = ws.issue(operator, vm, "vnc")
    assert plugin.lookup(token) == ("127.0.0.1", vm.vnc_port)
    with pytest.raises(TicketRefused):
        plugin.lookup(token)  # single use


def test_ssh_server_through_pinned_tunnel(plugin, operator, ssh_server, running_vm, make_target):
    vm = running_vm(ssh_server, make_target("echo").port)
    host, port = plugin.lookup(ws.issue(operator, vm, "serial"))
    assert host == "127.0.0.1" and port != vm.serial_port
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"through sshd")
        assert conn.recv(100) == b"through sshd"


def test_refusals(plugin, operator, viewer, local_server, running_vm, make_target, caplog):
    vm = running_vm(local_server, make_target("echo").port)
    read_only = ws.issue(viewer, vm, "serial")
    for token in ("", "not-a-ticket", read_only):
        with pytest.raises(TicketRefused) as info:
            plugin.lookup(token)
        assert read_only not in str(info.value)
    assert read_only not in caplog.text
