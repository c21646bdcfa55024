"""Bytes through the consumer: intact both ways, in order, to the last byte, and clean endings."""

import asyncio
import hashlib
import logging
import os

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from ovmweb.consoles import services
from ovmweb.consoles.consumers import (
    CLOSE_LIFETIME,
    CLOSE_LOGGED_OUT,
    CLOSE_NORMAL,
    CLOSE_UNAVAILABLE,
    CLOSE_VM_MOVED,
    CLOSE_VM_STOPPED,
)
from ovmweb.tunnels import streams
from tests.consoles import ws

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["local", "openssh", "asyncssh", "paramiko"])
def server(request):
    """Every bridging test runs against a local TCP port and through the real sshd's direct-tcpip
    (through an OpenSSH master, and with asyncssh and with paramiko as the SSH hop)."""
    return request.getfixturevalue(f"{request.param}_server")


def _open(user, vm, kind="serial"):
    return ws.communicator(f"/ws/console/{kind}/{vm.pk}/?ticket={ws.issue(user, vm, kind)}", ws.headers(user))


def test_echo_intact_both_ways(operator, server, running_vm, make_target):
    vm = running_vm(server, make_target("echo").port)
    comm = _open(operator, vm, "vnc")
    # Frames of many sizes, including empty-ish and larger than one SSH packet.
    frames = [os.urandom(n) for n in (1, 7, 100, 4096, 65536, 300_000, 1, 1 << 20)]

    async def run():
        assert (await comm.connect())[0]
        received = bytearray()
        for frame in frames:
            await comm.send_to(bytes_data=frame)
        want = sum(map(len, frames))
        while len(received) < want:
            received += await comm.receive_from(timeout=10)
        await comm.disconnect()
        return bytes(received)

    assert async_to_sync(run)() == b"".join(frames)


def test_end_of_stream_from_console_delivered_then_closed(operator, server, running_vm, make_target):
    payload = os.urandom(6 * 1024 * 1024 + 123)
    vm = running_vm(server, make_target("source", payload).port)
    comm = _open(operator, vm)

    async def run():
        assert (await comm.connect())[0]
        return await ws.collect(comm, timeout=20)

    data, code = async_to_sync(run)()
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(payload).hexdigest()
    assert len(data) == len(payload)
    assert code == CLOSE_NORMAL


def test_end_of_stream_from_browser_delivered(operator, server, running_vm, make_target):
    target = make_target("sink")
    vm = running_vm(server, target.port)
    comm = _open(operator, vm, "vnc")
    frames = [os.urandom(256 * 1024) for _ in range(12)] + [b"tail"]

    async def run():
        assert (await comm.connect())[0]
        for frame in frames:
            await comm.send_to(bytes_data=frame)
        await comm.disconnect()

    async_to_sync(run)()
    assert target.done.wait(10)
    expected = b"".join(frames)
    assert target.received == [(len(expected), hashlib.sha256(expected).hexdigest())]


def test_text_frames_are_sent_as_utf8(operator, local_server, running_vm, make_target):
    vm = running_vm(local_server, make_target("echo").port)
    comm = _open(operator, vm)

    async def run():
        assert (await comm.connect())[0]
        await comm.send_to(text_data="uname -n ✓\r")
        got = await comm.receive_from(timeout=5)
        await comm.disconnect()
        return got

    assert async_to_sync(run)() == "uname -n ✓\r".encode()


def test_view_only_serial_is_read_only(viewer, local_server, running_vm, make_target):
    sink = make_target("sink")
    vm = running_vm(local_server, sink.port)
    ticket, token = services.ticket_issue(user=viewer, vm=vm, kind="serial")
    assert ticket.read_only is True
    comm = ws.communicator(f"/ws/console/serial/{vm.pk}/?ticket={token}", ws.headers(viewer))

    async def run():
        assert (await comm.connect())[0]
        await comm.send_to(text_data="reboot\r")
        await comm.send_to(bytes_data=b"rm -rf /\r")
        await comm.disconnect()

    async_to_sync(run)()
    assert sink.done.wait(10)
    assert sink.received == [(0, hashlib.sha256(b"").hexdigest())]


def test_view_only_vnc_passes_screen_requests_drops_input(viewer, local_server, running_vm, make_target):
    sink = make_target("sink")
    vm = running_vm(local_server, sink.port)
    token = ws.issue(viewer, vm, "vnc")
    comm = ws.communicator(f"/ws/console/vnc/{vm.pk}/?ticket={token}", ws.headers(viewer))
    handshake = b"RFB 003.008\n" + b"\x01" + b"\x01"
    update_request = b"\x03\x00" + b"\x00\x00\x00\x00\x04\x00\x03\x00"
    key_down = b"\x04\x01\x00\x00\x00\x00\x00\x61"
    pointer = b"\x05\x01\x00\x10\x00\x10"

    async def run():
        assert (await comm.connect())[0]
        for frame in (handshake, key_down[:3], key_down[3:] + update_request, pointer):
            await comm.send_to(bytes_data=frame)
        await comm.disconnect()

    async_to_sync(run)()
    assert sink.done.wait(10)
    expected = handshake + update_request
    assert sink.received == [(len(expected), hashlib.sha256(expected).hexdigest())]


def _await_close(comm, trigger):
    async def run():
        assert (await comm.connect())[0]
        await trigger()
        message = await comm.receive_output(timeout=10)
        while message["type"] != "websocket.close":
            message = await comm.receive_output(timeout=10)
        return message.get("code")

    return async_to_sync(run)()


def test_logout_closes_the_users_consoles(operator, local_server, running_vm, make_target):
    from django.contrib.auth.signals import user_logged_out

    vm = running_vm(local_server, make_target("echo").port)
    comm = _open(operator, vm)

    @database_sync_to_async
    def logout():
        user_logged_out.send(sender=type(operator), request=None, user=operator)

    assert _await_close(comm, logout) == CLOSE_LOGGED_OUT


def test_a_console_that_takes_no_input_does_not_hold_the_logout(operator, server, running_vm, make_target):
    """Input waits for the console in a writer task, not in the consumer's message loop: with
    the guest reading nothing, the SSH window and socket buffers fill, and a logout (or the
    VM's stop, or the browser leaving) must still close the console at once."""
    from django.contrib.auth.signals import user_logged_out

    vm = running_vm(server, make_target("deaf").port)
    comm = _open(operator, vm)
    chunk = os.urandom(1 << 20)

    async def flood_then_logout():
        for _ in range(24):  # more than the SSH window and both sockets' buffers hold
            await comm.send_to(bytes_data=chunk)
        await asyncio.sleep(1)  # the frames reach the consumer (and, before the fix, its write blocks)
        await database_sync_to_async(user_logged_out.send)(sender=type(operator), request=None, user=operator)

    assert _await_close(comm, flood_then_logout) == CLOSE_LOGGED_OUT


def test_input_a_console_never_takes_is_bounded(operator, local_server, running_vm, make_target, monkeypatch):
    """Where the ASGI server cannot stop reading the browser (daphne can: the flow pauses it), queued
    input for a console that takes none ends the session instead of growing without bound."""
    from ovmweb.consoles import consumers

    monkeypatch.setattr(consumers, "INBOX_LIMIT", 4 << 20)
    vm = running_vm(local_server, make_target("deaf").port)
    comm = _open(operator, vm)
    chunk = os.urandom(1 << 20)

    async def flood():
        for _ in range(24):
            await comm.send_to(bytes_data=chunk)

    assert _await_close(comm, flood) == CLOSE_UNAVAILABLE


def test_vm_stop_closes_console(operator, local_server, running_vm, make_target):
    from ovmweb.inventory.services.vm_state import vm_set_status

    vm = running_vm(local_server, make_target("echo").port)
    comm = _open(operator, vm)

    @database_sync_to_async
    def stop():
        vm_set_status(vm=vm, status="STOPPED", reason="test")

    assert _await_close(comm, stop) == CLOSE_VM_STOPPED


def test_vm_migrated_closes_console_as_moved(operator, local_server, running_vm, make_target):
    """The page tells a migration from a stop by the code, and reconnects to the new server."""
    from channels.layers import get_channel_layer

    from ovmweb.consoles.consumers import LIVE_GROUP

    vm = running_vm(local_server, make_target("echo").port)
    comm = _open(operator, vm)

    async def migrated():
        payload = {"id": vm.pk, "status": "RUNNING", "server_id": vm.server_id + 1000}
        await get_channel_layer().group_send(LIVE_GROUP, {"type": "live.update", "topic": "vm", "payload": payload})

    assert _await_close(comm, migrated) == CLOSE_VM_MOVED


def test_session_lifetime(operator, local_server, running_vm, make_target, settings):
    settings.OVMWEB_CONSOLE_SESSION_LIFETIME = 0.3
    vm = running_vm(local_server, make_target("echo").port)
    comm = _open(operator, vm)

    async def nothing():
        return None

    assert _await_close(comm, nothing) == CLOSE_LIFETIME


def test_an_unexpected_failure_closes_the_console_and_is_logged(
    operator, local_server, running_vm, make_target, monkeypatch
):
    """A bug on the console side must not leave the browser on a console that never sends again."""
    vm = running_vm(local_server, make_target("source", b"x" * 1000).port)

    def broken(self, size):
        raise RuntimeError("unexpected")

    monkeypatch.setattr(streams.SocketStream, "read_nowait", broken)
    # A handler of our own: importing the ASGI application runs Django's logging set-up,
    # which replaces the root logger's handlers (pytest's caplog among them).
    failures = []
    handler = logging.Handler(logging.ERROR)
    handler.emit = failures.append
    logger = logging.getLogger("ovmweb.consoles.consumers")
    logger.addHandler(handler)
    comm = _open(operator, vm)

    async def run():
        assert (await comm.connect())[0]
        return await ws.collect(comm, timeout=10)

    try:
        data, code = async_to_sync(run)()
    finally:
        logger.removeHandler(handler)
    assert (data, code) == (b"", CLOSE_UNAVAILABLE)
    assert [str(r.exc_info[1]) for r in failures if r.exc_info] == ["unexpected"]
