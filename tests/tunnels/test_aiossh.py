"""The asyncssh console hop (OVMWEB_CONSOLE_SSH=asyncssh): pinned host key and its pool, against the real sshd."""

from __future__ import annotations

import asyncio

import pytest

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import aiossh
from ovmweb.tunnels.credentials import encrypt_credentials
from tests.tunnels.conftest import banner, drain, run
from tests.tunnels.sshd import server_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(sshd):
    return server_record(sshd)


def test_a_channel_reaches_the_target(server, echo_port):
    async def go():
        stream = await aiossh.open_console_stream(server, echo_port)
        try:
            return await banner(stream)
        finally:
            await stream.close()

    assert run(go) == b"SSH-"


def test_a_different_host_key_is_refused(server, echo_port, sshd):
    server.host_key_fingerprint = "SHA256:" + "A" * 43

    async def go():
        await aiossh.open_console_stream(server, echo_port)

    with pytest.raises(HostKeyMismatch) as info:
        run(go)
    assert info.value.offered_fingerprint.rstrip("=") == sshd["fingerprint"].rstrip("=")


def test_a_changed_host_key_fails_closed_even_with_connections_open(server, echo_port):
    async def go():
        busy = await aiossh.open_console_stream(server, echo_port)
        try:
            server.host_key_fingerprint = "SHA256:" + "A" * 43
            with pytest.raises(HostKeyMismatch):
                await aiossh.open_console_stream(server, echo_port)
        finally:
            await busy.close()

    run(go)


def test_an_empty_pin_is_refused(server, echo_port):
    server.host_key_fingerprint = ""

    async def go():
        await aiossh.open_console_stream(server, echo_port)

    with pytest.raises((ValueError, ConnectionFailed)):
        run(go)


def test_channels_spread_over_up_to_the_configured_connections(server, echo_port, settings):
    settings.OVMWEB_SSH_TRANSPORTS_PER_SERVER = 3

    async def go():
        opened = [await aiossh.open_console_stream(server, echo_port) for _ in range(7)]
        try:
            conns = [s.channel.get_connection() for s in opened]
            loads = sorted(sum(c is u for c in conns) for u in {id(c): c for c in conns}.values())
            assert [await banner(s) for s in opened] == [b"SSH-"] * 7
            return loads
        finally:
            for s in opened:
                await s.close()

    assert run(go) == [2, 2, 3]


def test_an_edited_server_does_not_reuse_the_old_connection(server, echo_port, sshd):
    async def go():
        first = await aiossh.open_console_stream(server, echo_port)
        old = first.channel.get_connection()
        await first.close()
        server.credentials_encrypted = encrypt_credentials({"private_key": sshd["private_key"], "password": "x"})
        second = await aiossh.open_console_stream(server, echo_port)
        try:
            assert second.channel.get_connection() is not old
            assert await banner(second) == b"SSH-"
        finally:
            await second.close()

    run(go)


def test_a_dead_connection_is_replaced(server, echo_port):
    async def go():
        first = await aiossh.open_console_stream(server, echo_port)
        dead = first.channel.get_connection()
        dead.abort()
        await dead.wait_closed()
        await drain(first)  # the banner, if it came first, then the console sees its end
        fresh = await aiossh.open_console_stream(server, echo_port)
        try:
            assert fresh.channel.get_connection() is not dead
            assert await banner(fresh) == b"SSH-"
        finally:
            await fresh.close()

    run(go)


def test_a_closed_port_is_refused(server, closed_port):
    async def go():
        await aiossh.open_console_stream(server, closed_port)

    with pytest.raises(ConnectionFailed, match="refused a tunnel"):
        run(go)


def test_a_deleted_servers_connections_are_closed_from_another_thread(server, echo_port):
    """Server deletion runs in a job's thread; the connections belong to the consumers' loop."""

    async def go():
        stream = await aiossh.open_console_stream(server, echo_port)
        conn = stream.channel.get_connection()
        await asyncio.get_running_loop().run_in_executor(None, aiossh.close_server, server.pk)
        await asyncio.wait_for(conn.wait_closed(), 10)
        assert server.pk not in aiossh._pool().entries
        await stream.close()

    run(go)


def test_a_closed_channel_gives_its_place_back(server, echo_port, settings):
    settings.OVMWEB_SSH_TRANSPORTS_PER_SERVER = 2

    async def go():
        opened = [await aiossh.open_console_stream(server, echo_port) for _ in range(3)]
        entries = aiossh._pool().entries[server.pk]
        assert sorted(entry.load() for entry in entries) == [1, 2]
        for stream in opened:
            await stream.close()
        for _ in range(100):
            if all(entry.load() == 0 for entry in entries):
                break
            await asyncio.sleep(0.05)
        assert [entry.load() for entry in entries] == [0, 0]
        again = await aiossh.open_console_stream(server, echo_port)
        try:
            assert again.channel.get_connection() in [entry.conn for entry in entries]
            assert len(entries) == 2
        finally:
            await again.close()

    run(go)
