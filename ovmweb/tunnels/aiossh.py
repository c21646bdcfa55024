"""The console's SSH hop on asyncssh (OVMWEB_CONSOLE_SSH=asyncssh, the default; paramiko: pool.py).

The same pool as pool.py, but asyncio-native: connections live on the event
loop that runs the consumers (daphne's), so a console's bytes go from sshd's
socket through asyncssh to the WebSocket without a thread hop. Up to
``OVMWEB_SSH_TRANSPORTS_PER_SERVER`` connections per server, each new channel
on the least busy; a connection opened for a server since edited (address,
port, user, pinned key, credentials) or since dead is never reused.

Host keys are pinned as in ssh.py: no known_hosts file is read, the client's
``validate_host_public_key`` accepts exactly the key with the recorded SHA256
fingerprint, and any other key fails closed with ``HostKeyMismatch``.

asyncssh objects belong to the loop that made them; each loop has its own pool
(tests run a loop per test, daphne one for the process).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import asyncssh

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import pool, ssh, streams
from ovmweb.tunnels.credentials import decrypt_credentials

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = pool.CONNECT_TIMEOUT


def fingerprint(key: asyncssh.SSHKey) -> str:
    """As ssh.host_key_fingerprint: SHA256 of the public key blob, OpenSSH's form."""
    return ssh.blob_fingerprint(key.public_data)


class PinnedClient(asyncssh.SSHClient):
    """Trusts exactly the host key with the pinned fingerprint (asyncssh is given no known keys)."""

    def __init__(self, expected_fingerprint: str):
        if not expected_fingerprint or not expected_fingerprint.strip():
            raise ValueError("a host key fingerprint is required")  # an empty pin would be trust on first use
        self.expected = ssh.normalize_fingerprint(expected_fingerprint)
        self.offered: str | None = None
        self.lost = False

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        self.offered = fingerprint(key)
        return ssh._constant_time_equal(self.offered, self.expected)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


def _no_known_hosts(host: str, addr: str, port: int) -> tuple:
    # Not None (that would skip host key checks altogether) and not empty (asyncssh would read
    # ~/.ssh/known_hosts): no trusted keys, CAs or revocations; PinnedClient decides.
    return ([], [], [])


@dataclass
class _Entry:
    conn: asyncssh.SSHClientConnection
    client: PinnedClient
    identity: tuple
    opening: int = 0  # channels being opened on it
    open: int = 0  # consoles' channels open on it (each gives its place back when it is lost)

    def usable(self, identity: tuple) -> bool:
        return self.identity == identity and not self.client.lost

    def load(self) -> int:
        return self.open + self.opening

    def release(self) -> None:
        self.open -= 1


@dataclass
class _LoopPool:
    entries: dict[int, list[_Entry]] = field(default_factory=dict)
    locks: dict[int, asyncio.Lock] = field(default_factory=dict)


_pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}


def _pool() -> _LoopPool:
    loop = asyncio.get_running_loop()
    found = _pools.get(loop)
    if found is None:
        # Pools of loops that have ended go (their sockets close as the connections are collected).
        for ended in [other for other in _pools if other.is_closed()]:
            del _pools[ended]
        found = _pools[loop] = _LoopPool()
    return found


async def _connect(server) -> _Entry:
    credentials = decrypt_credentials(server.credentials_encrypted)
    client = PinnedClient(server.host_key_fingerprint)
    client_keys = None
    if credentials.get("private_key"):
        try:
            client_keys = [asyncssh.import_private_key(credentials["private_key"])]
        except (asyncssh.KeyImportError, ValueError) as exc:
            raise ConnectionFailed(f"unusable private key: {type(exc).__name__}") from None
    password = credentials.get("password")
    where = f"{server.hostname}:{server.ssh_port}"
    try:
        conn = await asyncssh.connect(
            server.hostname,
            server.ssh_port,
            username=server.ssh_user,
            client_factory=lambda: client,
            known_hosts=_no_known_hosts,
            x509_trusted_certs=None,
            client_keys=client_keys,  # None: no key at all (an empty list would load ~/.ssh's)
            password=password,
            agent_path=None,
            config=[],
            gss_host=None,
            kbdint_auth=False,
            host_based_auth=False,
            password_auth=bool(password),
            encryption_algs=list(ssh.CIPHERS),
            mac_algs=list(ssh.MACS),
            compression_algs=["none"],
            keepalive_interval=ssh.KEEPALIVE_INTERVAL,
            connect_timeout=CONNECT_TIMEOUT,
            login_timeout=CONNECT_TIMEOUT,
        )
    except asyncssh.HostKeyNotVerifiable as exc:
        offered = client.offered
        if offered is None:  # not a plain key (a host certificate): nothing was compared
            raise ConnectionFailed(f"host key of {where} not verifiable: {exc}") from None
        raise HostKeyMismatch(
            f"host key of {server.hostname} is {offered}, expected {client.expected}", offered_fingerprint=offered
        ) from None
    except asyncssh.PermissionDenied:
        raise ConnectionFailed(f"SSH authentication to {server.ssh_user}@{where} failed") from None
    except (OSError, asyncssh.Error, TimeoutError) as exc:
        raise ConnectionFailed(f"SSH connection to {where} failed: {exc}") from None
    _feed_in_slices(conn)
    return _Entry(conn=conn, client=client, identity=pool._identity(server))


# asyncssh appends each socket read (asyncio reads up to 256 KiB) to a bytes buffer and cuts
# every packet (sshd sends 32-48 KiB) off its front, copying the rest each time. Fed in slices
# of about one packet the buffer stays small: 1.35 instead of 1.55 CPU-s/GiB received
# (median of 5, 256 MiB through the loopback sshd). Any split of a byte stream is a valid
# sequence of data_received calls.
FEED_SLICE = 32 * 1024


def _feed_in_slices(conn: asyncssh.SSHClientConnection) -> None:
    received = conn.data_received

    def data_received(data: bytes, datatype=None) -> None:
        if len(data) <= FEED_SLICE:
            received(data)
            return
        view = memoryview(data)
        for start in range(0, len(data), FEED_SLICE):
            received(view[start : start + FEED_SLICE])

    conn.data_received = data_received


async def _entry_for(server) -> _Entry:
    """The least busy usable connection to ``server`` (a new one while every open one carries a channel)."""
    if server.transport != "ssh":
        raise ConnectionFailed(f"server {server.name} is local: it has no SSH transport")
    state = _pool()
    identity = pool._identity(server)
    lock = state.locks.setdefault(server.pk, asyncio.Lock())
    async with lock:
        entries = state.entries.setdefault(server.pk, [])
        best, enough = pool.settle(server, entries, identity, close=lambda entry: entry.conn.close())
        if enough:
            best.opening += 1
            return best
        try:
            entry = await _connect(server)
        except HostKeyMismatch:
            raise  # fail closed, whatever is already open
        except ConnectionFailed:
            if best is not None:  # the server may cap sessions (MaxStartups): make do with what is open
                best.opening += 1
                return best
            raise
        entries.append(entry)
        entry.opening += 1
        return entry


def _discard(server_id: int, entry: _Entry) -> None:
    entries = _pool().entries.get(server_id, [])
    if entry in entries:
        entries.remove(entry)
    entry.conn.close()


async def open_direct_tcpip(server, port: int) -> streams.AsyncsshStream:
    """A stream to 127.0.0.1:``port`` on ``server`` over a pooled connection (retried once on a fresh one)."""
    loop = asyncio.get_running_loop()
    for attempt in (1, 2):
        entry = await _entry_for(server)
        stream = streams.AsyncsshStream(loop)
        try:
            await asyncio.wait_for(
                entry.conn.create_connection(
                    stream.session,
                    "127.0.0.1",
                    port,
                    "127.0.0.1",
                    0,
                    window=ssh.WINDOW_SIZE,
                    max_pktsize=ssh.MAX_PACKET_SIZE,
                ),
                CONNECT_TIMEOUT,
            )
            entry.open += 1
            stream.on_lost = entry.release
            return stream
        except asyncssh.ChannelOpenError as exc:
            # The server answered: the port is closed (VM not running there); no retry helps.
            raise ConnectionFailed(f"server {server.name} refused a tunnel to port {port}: {exc.reason}") from None
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if attempt == 2:
                raise ConnectionFailed(f"tunnel to server {server.name} failed: {exc}") from None
            _discard(server.pk, entry)
        finally:
            entry.opening -= 1
    raise AssertionError("unreachable")


async def open_console_stream(server, port: int) -> streams.ConsoleStream:
    """A console stream to 127.0.0.1:``port`` of ``server``: a TCP socket if local, an asyncssh channel otherwise."""
    loop = asyncio.get_running_loop()
    if server.transport == "local":
        sock = await loop.run_in_executor(streams.openers, pool.open_local_socket, port)
        return streams.SocketStream(sock, loop)
    return await open_direct_tcpip(server, port)


def close_server(server_id: int) -> None:
    """Close every loop's connections to a server (it was deleted); callable from any thread."""
    for loop, state in list(_pools.items()):

        def close(state: _LoopPool = state) -> None:
            for entry in state.entries.pop(server_id, []):
                entry.conn.close()

        try:
            loop.call_soon_threadsafe(close)
        except RuntimeError:  # that loop has ended: its connections went with it
            pass


async def close_all() -> None:
    """Close this loop's connections (tests; a process exiting closes them anyway)."""
    state = _pools.pop(asyncio.get_running_loop(), None)
    if state is None:
        return
    for entries in state.entries.values():
        for entry in entries:
            entry.conn.close()
            await entry.conn.wait_closed()
