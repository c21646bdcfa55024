"""The per-server pool of SSH transports, against the real loopback sshd."""

from __future__ import annotations

import time

import pytest

from ovmweb.errors import HostKeyMismatch
from ovmweb.tunnels import pool
from tests.tunnels.sshd import server_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(sshd):
    yield server_record(sshd)
    pool.close_all()


def test_channels_spread_over_up_to_the_configured_connections(server, echo_port, settings):
    settings.OVMWEB_SSH_TRANSPORTS_PER_SERVER = 3
    channels = [pool.open_direct_tcpip(server, echo_port) for _ in range(7)]
    try:
        transports = [c.get_transport() for c in channels]
        distinct = {id(t) for t in transports}
        assert len(distinct) == 3  # a new connection only while every open one is busy, never more than 3
        loads = sorted(sum(t is u for t in transports) for u in {id(t): t for t in transports}.values())
        assert loads == [2, 2, 3]  # each new channel went to the least busy connection
        # Every channel really reaches the target (sshd greets with its banner).
        assert all(c.recv(4) == b"SSH-" for c in channels)
    finally:
        for c in channels:
            c.close()


def test_an_idle_connection_is_reused_before_opening_another(server, echo_port, settings):
    settings.OVMWEB_SSH_TRANSPORTS_PER_SERVER = 4
    first = pool.open_direct_tcpip(server, echo_port)
    transport = first.get_transport()
    first.close()
    # The channel leaves the connection once sshd confirms the close.
    deadline = time.monotonic() + 10
    while len(transport._channels) and time.monotonic() < deadline:
        time.sleep(0.01)
    second = pool.open_direct_tcpip(server, echo_port)
    try:
        assert second.get_transport() is transport
    finally:
        second.close()


def test_dead_connection_is_replaced(server, echo_port):
    channel = pool.open_direct_tcpip(server, echo_port)
    dead = channel.get_transport()
    dead.close()
    fresh = pool.open_direct_tcpip(server, echo_port)
    try:
        assert fresh.get_transport() is not dead and fresh.get_transport().is_active()
        assert fresh.recv(4) == b"SSH-"
    finally:
        fresh.close()


def test_changed_host_key_fails_closed_even_with_connections_open(server, echo_port, settings):
    settings.OVMWEB_SSH_TRANSPORTS_PER_SERVER = 4
    busy = pool.open_direct_tcpip(server, echo_port)
    try:
        server.host_key_fingerprint = "SHA256:" + "A" * 43
        with pytest.raises(HostKeyMismatch):
            pool.open_direct_tcpip(server, echo_port)
    finally:
        busy.close()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_forward_whose_transport_dies_as_it_ends_ends_without_an_error(server, echo_port, monkeypatch):
    """Seen in CI: the forward's channel.close() met a transport that had just died (paramiko raises
    EOFError from its packetizer), and the bridge thread ended with that exception."""
    import socket
    import threading

    import paramiko

    real_close = paramiko.Channel.close

    def close_on_a_dead_transport(channel):
        real_close(channel)
        raise EOFError()

    local_port = pool.forward_once(server, echo_port)
    conn = socket.create_connection(("127.0.0.1", local_port), timeout=10)
    assert conn.recv(4) == b"SSH-"
    bridge = next(t for t in threading.enumerate() if t.name == f"forward-{local_port}")
    monkeypatch.setattr(paramiko.Channel, "close", close_on_a_dead_transport)
    conn.close()  # the browser side leaves: the bridge closes its channel
    bridge.join(10)
    assert not bridge.is_alive()
