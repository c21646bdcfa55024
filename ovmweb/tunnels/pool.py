"""A few SSH transports per server, shared by all of its consoles and tunnels.

A transport is opened on first use, kept alive with SSH keepalives, and
replaced transparently when it has died (server rebooted, network blip).
Opening a console is then one direct-tcpip channel on an existing
connection: no handshake, no authentication, a few hundred microseconds.

Up to ``OVMWEB_SSH_TRANSPORTS_PER_SERVER`` connections are kept per server and
each new channel goes to the least busy one: OpenSSH serves each connection
with one single-threaded process, so consoles spread over several connections
use several cores of the server (and several paramiko transport threads here).
A further connection is only opened once every existing one carries a channel.

Servers with the ``local`` transport are this machine: their console ports
are reached with a plain TCP connection instead.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass

import paramiko
from django.conf import settings

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import ssh
from ovmweb.tunnels.credentials import decrypt_credentials

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10


@dataclass
class _Entry:
    client: paramiko.SSHClient
    # What the transport was opened with: a server edited since (new address,
    # new pinned key, new credentials) must not keep using the old connection.
    identity: tuple

    @property
    def transport(self) -> paramiko.Transport | None:
        return self.client.get_transport()

    def usable(self, identity: tuple) -> bool:
        transport = self.transport
        return self.identity == identity and transport is not None and transport.is_active()

    def load(self) -> int:
        # Open channels on this connection (paramiko's channel map supports len()).
        transport = self.transport
        return len(transport._channels) if transport is not None else 0


_entries: dict[int, list[_Entry]] = {}
_lock = threading.Lock()
# One lock per server so that a slow or unreachable server does not hold up
# consoles of every other server while it connects.
_server_locks: dict[int, threading.Lock] = {}


def _identity(server) -> tuple:
    return (
        server.hostname,
        server.ssh_port,
        server.ssh_user,
        server.host_key_fingerprint,
        server.credentials_encrypted,
    )


def _server_lock(server_id: int) -> threading.Lock:
    with _lock:
        return _server_locks.setdefault(server_id, threading.Lock())


def _open_client(server) -> paramiko.SSHClient:
    credentials = decrypt_credentials(server.credentials_encrypted)
    return ssh.connect(
        hostname=server.hostname,
        port=server.ssh_port,
        username=server.ssh_user,
        password=credentials.get("password"),
        private_key=credentials.get("private_key"),
        expected_fingerprint=server.host_key_fingerprint,
        timeout=CONNECT_TIMEOUT,
    )


def settle(server, entries: list, identity: tuple, *, close) -> tuple:
    """The pool rule shared by both console hops (this module and aiossh.py): drop from ``entries``
    the connections that died or were opened for an older identity of ``server`` (``close`` each),
    then (the least busy one, whether it will do): it will while it is idle or the pool is full."""
    for entry in [entry for entry in entries if not entry.usable(identity)]:
        logger.info(
            "SSH connection to server %s is %s; reconnecting",
            server.name,
            "outdated" if entry.identity != identity else "dead",
        )
        close(entry)
        entries.remove(entry)
    best = min(entries, key=lambda entry: entry.load(), default=None)
    limit = max(1, int(getattr(settings, "OVMWEB_SSH_TRANSPORTS_PER_SERVER", 4)))
    return best, best is not None and (best.load() == 0 or len(entries) >= limit)


def transport_for(server) -> paramiko.Transport:
    """A live, authenticated transport to ``server``: the least busy of its connections (opened as needed).

    Raises ``HostKeyMismatch`` / ``ConnectionFailed`` like ``ssh.connect``.
    """
    if server.transport != "ssh":
        raise ConnectionFailed(f"server {server.name} is local: it has no SSH transport")
    identity = _identity(server)
    with _server_lock(server.pk):
        entries = _entries.setdefault(server.pk, [])
        best, enough = settle(server, entries, identity, close=lambda entry: entry.client.close())
        if enough:
            return best.transport
        try:
            client = _open_client(server)
        except HostKeyMismatch:
            raise  # fail closed, whatever is already open
        except ConnectionFailed:
            if best is not None:  # the server may cap sessions (MaxStartups): make do with what is open
                return best.transport
            raise
        entries.append(_Entry(client=client, identity=identity))
        return client.get_transport()


def open_direct_tcpip(server, port: int) -> paramiko.Channel:
    """A channel to 127.0.0.1:``port`` on ``server`` (an SSH direct-tcpip forward).

    Retries once on a fresh transport: a transport that died since its last
    keepalive is only noticed when a channel open fails.
    """
    for attempt in (1, 2):
        transport = transport_for(server)
        try:
            return transport.open_channel(
                "direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT
            )
        except paramiko.ChannelException as exc:
            # The server answered: the port is closed (VM not running there); no retry helps.
            raise ConnectionFailed(f"server {server.name} refused a tunnel to port {port}: {exc}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            if attempt == 2:
                raise ConnectionFailed(f"tunnel to server {server.name} failed: {exc}") from exc
            _discard(server.pk, transport)
    raise AssertionError("unreachable")


def _discard(server_id: int, transport: paramiko.Transport) -> None:
    with _server_lock(server_id):
        entries = _entries.get(server_id, [])
        for entry in [e for e in entries if e.transport is transport]:
            entry.client.close()
            entries.remove(entry)


def open_local_socket(port: int) -> socket.socket:
    """A TCP connection to 127.0.0.1:``port`` on this machine, Nagle off (consoles are interactive)."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT)
    except OSError as exc:
        raise ConnectionFailed(f"console port {port} on this machine is not reachable: {exc}") from exc
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(None)
    return sock


def open_console_stream(server, port: int) -> paramiko.Channel | socket.socket:
    """A byte stream to 127.0.0.1:``port`` of ``server``: a TCP socket if local, an SSH channel otherwise."""
    if server.transport == "local":
        return open_local_socket(port)
    return open_direct_tcpip(server, port)


def close_server(server_id: int) -> None:
    with _server_lock(server_id):
        entries = _entries.pop(server_id, [])
    for entry in entries:
        entry.client.close()


def close_all() -> None:
    with _lock:
        ids = list(_entries)
    for server_id in ids:
        close_server(server_id)


def forward_once(server, port: int, *, accept_timeout: float = 10) -> int:
    """Listen on an ephemeral 127.0.0.1 port; bridge the first connection to ``port`` on ``server``.

    For programs that can only dial TCP (websockify's token plugin): they get
    a local port whose one connection is carried over the server's shared SSH
    transport. The listener closes after one connection or ``accept_timeout``.
    """
    import select

    channel = open_console_stream(server, port)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(accept_timeout)
    local_port = listener.getsockname()[1]

    def bridge() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            _close_quietly(channel)
            return
        finally:
            listener.close()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            try:
                while True:
                    readable, _, _ = select.select([conn, channel], [], [])
                    if conn in readable:
                        data = conn.recv(1 << 20)
                        if not data:
                            break
                        channel.sendall(data)
                    if channel in readable:
                        data = channel.recv(1 << 20)
                        if not data:
                            break
                        conn.sendall(data)
            except (OSError, EOFError):
                pass
            finally:
                _close_quietly(channel)

    threading.Thread(target=bridge, name=f"forward-{local_port}", daemon=True).start()
    return local_port


def _close_quietly(channel) -> None:
    """Close a forward's channel; its transport may be gone already (closing then raises EOFError)."""
    try:
        channel.close()
    except (OSError, EOFError):
        pass
