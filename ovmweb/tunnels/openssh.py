"""The console's SSH hop through OpenSSH's connection sharing (OVMWEB_CONSOLE_SSH=openssh, the default).

One ``ssh`` master per server (and per ovmweb process) holds the SSH connection. Each console
asks it, over its control socket and OpenSSH's multiplexing protocol (PROTOCOL.mux in OpenSSH's
sources), for a stdio forward to 127.0.0.1:port on the server, and hands it one end of two
socket pairs: the master writes what the console sends into one and reads what the browser
sends from the other. Encryption and SSH packets are then OpenSSH's C code in a process of its
own, beside the ovmweb process that runs the WebSockets, the way websockify + ``ssh -L`` split
the work; opening a console costs a round trip on a Unix socket and a channel open, no process.

Host keys stay pinned: the master reads a known_hosts file holding exactly the server's recorded
key, checked first against the recorded SHA256 fingerprint, with StrictHostKeyChecking=yes and no
other configuration, agent or key (``ssh.openssh_options``). The key and known_hosts files are
written 0600 in a 0700 directory of this process's own and removed as soon as the master has
authenticated: it needs neither afterwards. The control socket (0600 in that directory; the
master also checks that its peer runs as the same user) is the master's only door.

Servers without a recorded host key or private key (a password alone) keep the asyncssh hop
(aiossh.py), as does a machine without an ``ssh`` client.

A master lives until it is terminated: when its server is edited (the next console starts a
master for the new address, key or credentials and terminates the old one) or deleted, when this
process exits, after MASTER_IDLE seconds without a console (ControlPersist), or when its
connection dies (ServerAlive). A control socket that does not answer is a dead master: the
console starts a new one and tries once more.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import itertools
import logging
import os
import re
import shutil
import socket
import struct
import subprocess  # nosec B404  # runs the ssh client with an argument list, no shell
import tempfile
import threading
from dataclasses import dataclass

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import aiossh, pool, ssh, streams
from ovmweb.tunnels.credentials import decrypt_credentials

logger = logging.getLogger(__name__)

MUX_VERSION = 4
MUX_MSG_HELLO = 0x00000001
MUX_C_TERMINATE = 0x10000005
MUX_C_NEW_STDIO_FWD = 0x10000008
MUX_S_SESSION_OPENED = 0x80000006
MAX_MESSAGE = 64 * 1024  # the master's answers are a few dozen bytes

# Seconds a master stays without any console before it exits by itself.
MASTER_IDLE = 300
# Connecting and authenticating a master (ssh's own ConnectTimeout is 10 s).
START_TIMEOUT = 30


class NotApplicable(Exception):
    """This server cannot use an OpenSSH master (the asyncssh hop serves it)."""


class MasterGone(Exception):
    """The master's control socket does not answer: it exited."""


@dataclass
class Master:
    server_id: int
    identity: tuple
    control: str | None  # None: not applicable (``reason``), the asyncssh hop is used
    reason: str = ""

    def terminate(self) -> None:
        if self.control is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as ctl:
                ctl.settimeout(5)
                ctl.connect(self.control)
                ctl.sendall(_message(MUX_MSG_HELLO, MUX_VERSION))
                _read_blocking(ctl)
                ctl.sendall(_message(MUX_C_TERMINATE, 1))
                _read_blocking(ctl)
        except (OSError, EOFError, ValueError):
            pass  # gone already


_masters: dict[int, Master] = {}
_lock = threading.Lock()
_server_locks: dict[int, threading.Lock] = {}
_names = itertools.count(1)
_runtime: str | None = None


def _identity(server) -> tuple:
    return (*pool._identity(server), server.host_key)


def _server_lock(server_id: int) -> threading.Lock:
    with _lock:
        return _server_locks.setdefault(server_id, threading.Lock())


RUNTIME_PREFIX = "ovmweb-ssh-"


def _runtime_dir() -> str:
    """This process's 0700 directory for control sockets (short: a Unix socket path has ~100 bytes)."""
    global _runtime
    with _lock:
        if _runtime is None or not os.path.isdir(_runtime):
            _sweep_dead()
            _runtime = tempfile.mkdtemp(prefix=f"{RUNTIME_PREFIX}{os.getpid()}-")
        return _runtime


def _sweep_dead() -> None:
    """Remove the directories of ovmweb processes that died without their exit handler (a key
    file can be left there only by a death within a master's start)."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if not name.startswith(RUNTIME_PREFIX):
            continue
        pid = name[len(RUNTIME_PREFIX) :].split("-", 1)[0]
        path = os.path.join(base, name)
        try:
            if not pid.isdigit() or os.stat(path).st_uid != os.getuid() or _alive(int(pid)):
                continue
        except OSError:
            continue
        shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# --- the mux protocol's framing ------------------------------------------------------------


def _u32(value: int) -> bytes:
    return struct.pack(">I", value)


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return _u32(len(data)) + data


def _message(kind: int, *fields: int | str) -> bytes:
    body = _u32(kind) + b"".join(_u32(field) if isinstance(field, int) else _string(field) for field in fields)
    return _u32(len(body)) + body


def _length(header: bytes) -> int:
    length = struct.unpack(">I", header)[0]
    if not 4 <= length <= MAX_MESSAGE:
        raise ValueError(f"mux message of {length} bytes")
    return length


def _read_blocking(ctl: socket.socket) -> bytes:
    def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = ctl.recv(size - len(data))
            if not chunk:
                raise EOFError("control socket closed")
            data += chunk
        return data

    return exactly(_length(exactly(4)))


async def _read(loop: asyncio.AbstractEventLoop, ctl: socket.socket) -> bytes:
    async def exactly(size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = await loop.sock_recv(ctl, size - len(data))
            if not chunk:
                raise EOFError("control socket closed")
            data += chunk
        return data

    return await exactly(_length(await exactly(4)))


def _reason(body: bytes) -> str:
    if len(body) < 12:
        return "no reason given"
    size = struct.unpack(">I", body[8:12])[0]
    return body[12 : 12 + size].decode("utf-8", "replace")[:200]


# --- masters -----------------------------------------------------------------------------------


def _pinned_key(server) -> str:
    """The recorded host key ("type base64"), if it is the key of the pinned fingerprint."""
    parts = server.host_key.split()
    if len(parts) < 2:
        raise NotApplicable("no recorded host key")
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        raise ConnectionFailed(f"the recorded host key of server {server.name} is not base64") from None
    found = ssh.blob_fingerprint(blob)
    if not ssh._constant_time_equal(found, ssh.normalize_fingerprint(server.host_key_fingerprint)):
        raise ConnectionFailed(
            f"the recorded host key of server {server.name} is not the pinned fingerprint's; discover it again"
        )
    return f"{parts[0]} {parts[1]}"


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")


def _start(server, identity: tuple) -> Master:
    """Start an ``ssh`` master for ``server`` and wait until it has authenticated (blocking)."""
    program = shutil.which("ssh")
    if program is None:
        raise NotApplicable("no ssh client on this machine")
    host_key = _pinned_key(server)
    private_key = decrypt_credentials(server.credentials_encrypted).get("private_key")
    if not private_key:
        raise NotApplicable("no private key (a password alone)")
    stem = os.path.join(_runtime_dir(), f"s{server.pk}-{next(_names)}")
    keyfile, known_hosts, control = f"{stem}.key", f"{stem}.hosts", f"{stem}.ctl"
    command = [
        program,
        *ssh.openssh_options(known_hosts=known_hosts, keyfile=keyfile),
        "-o",
        "ControlMaster=yes",
        "-o",
        f"ControlPath={ssh.ssh_path(control)}",
        "-o",
        f"ControlPersist={MASTER_IDLE}",
        "-o",
        "Ciphers=" + ",".join(ssh.CIPHERS),
        "-o",
        "MACs=" + ",".join(ssh.MACS),
        "-o",
        "LogLevel=ERROR",
        "-N",
        "-p",
        str(server.ssh_port),
        "-l",
        server.ssh_user,
        "--",
        server.hostname,
    ]
    try:
        _write_private(keyfile, private_key)
        _write_private(
            known_hosts, ssh.known_hosts_line(hostname=server.hostname, port=server.ssh_port, host_key=host_key)
        )
        with tempfile.TemporaryFile() as errors:
            # With ControlPersist, ssh returns once authenticated and leaves the master running.
            done = subprocess.run(  # nosec B603  # a fixed program and an argument list
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors, timeout=START_TIMEOUT
            )
            errors.seek(0)
            text = errors.read(8192).decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        raise ConnectionFailed(f"SSH connection to {server.hostname}:{server.ssh_port} timed out") from None
    finally:
        for path in (keyfile, known_hosts):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    if done.returncode != 0:
        _raise_for(server, text)
    logger.info("SSH master for server %s started", server.name)
    return Master(server_id=server.pk, identity=identity, control=control)


def _raise_for(server, text: str) -> None:
    where = f"{server.hostname}:{server.ssh_port}"
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("@")]
    if "Host key verification failed" in text or "HOST IDENTIFICATION HAS CHANGED" in text:
        offered = re.search(r"SHA256:[A-Za-z0-9+/]+", text)
        offered_fingerprint = offered.group(0) if offered else ""
        raise HostKeyMismatch(
            f"host key of {server.hostname} is {offered_fingerprint or 'not the pinned one'}, "
            f"expected {ssh.normalize_fingerprint(server.host_key_fingerprint)}",
            offered_fingerprint=offered_fingerprint,
        )
    if "Permission denied" in text:
        raise ConnectionFailed(f"SSH authentication to {server.ssh_user}@{where} failed")
    raise ConnectionFailed(f"SSH connection to {where} failed: {lines[-1] if lines else 'ssh exited'}")


def master_for(server, stale: Master | None = None) -> Master:
    """The master for ``server``'s current identity, started (or restarted, ``stale``) as needed; blocking."""
    identity = _identity(server)
    with _server_lock(server.pk):
        current = _masters.get(server.pk)
        if current is not None and current.identity == identity and current is not stale:
            return current
        if current is not None:
            del _masters[server.pk]
            if current.identity != identity:
                logger.info("SSH master for server %s is outdated; starting a new one", server.name)
            current.terminate()
        try:
            master = _start(server, identity)
        except NotApplicable as exc:
            master = Master(server_id=server.pk, identity=identity, control=None, reason=str(exc))
        _masters[server.pk] = master
        return master


def close_server(server_id: int) -> None:
    """Terminate the master of a deleted server (its consoles end); callable from any thread."""
    with _server_lock(server_id):
        master = _masters.pop(server_id, None)
    if master is not None:
        master.terminate()


def close_all() -> None:
    """Terminate every master of this process (at exit, and tests)."""
    with _lock:
        ids = list(_masters)
    for server_id in ids:
        close_server(server_id)


def _at_exit() -> None:
    close_all()
    if _runtime is not None:
        shutil.rmtree(_runtime, ignore_errors=True)


atexit.register(_at_exit)


# --- consoles -------------------------------------------------------------------------------------


async def _forward(master: Master, port: int, server_name: str) -> streams.MuxStream:
    """Ask ``master`` for a stdio forward to 127.0.0.1:``port``; the stream of its two socket pairs."""
    loop = asyncio.get_running_loop()
    ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ctl.setblocking(False)
    pairs: list[socket.socket] = []
    try:
        try:
            await loop.sock_connect(ctl, master.control)
            await loop.sock_sendall(ctl, _message(MUX_MSG_HELLO, MUX_VERSION))
            hello = await asyncio.wait_for(_read(loop, ctl), pool.CONNECT_TIMEOUT)
        except (OSError, EOFError, TimeoutError) as exc:
            raise MasterGone(str(exc)) from None
        if struct.unpack(">II", hello[:8]) != (MUX_MSG_HELLO, MUX_VERSION):
            raise ConnectionFailed("the ssh master speaks another multiplexing protocol")
        to_console, theirs_in = socket.socketpair()
        from_console, theirs_out = socket.socketpair()
        pairs = [to_console, from_console]
        await loop.sock_sendall(ctl, _message(MUX_C_NEW_STDIO_FWD, 1, "", "127.0.0.1", port))
        try:
            # The master reads its stdin and stdout right after the request, one per message.
            for theirs in (theirs_in, theirs_out):
                socket.send_fds(ctl, [b"\0"], [theirs.fileno()])
        finally:
            theirs_in.close()
            theirs_out.close()
        reply = await asyncio.wait_for(_read(loop, ctl), pool.CONNECT_TIMEOUT)
        kind = struct.unpack(">I", reply[:4])[0]
        if kind == MUX_S_SESSION_OPENED:
            return streams.MuxStream(from_console, to_console, ctl, loop)
        raise ConnectionFailed(f"server {server_name} refused a tunnel to port {port}: {_reason(reply)}")
    except BaseException:
        for sock in (*pairs, ctl):
            sock.close()
        raise


async def open_console_stream(server, port: int) -> streams.ConsoleStream:
    """A console stream to 127.0.0.1:``port`` of ``server`` through its OpenSSH master.

    Local servers, and servers an OpenSSH master cannot serve (see the top), take aiossh's path."""
    if server.transport != "ssh":
        return await aiossh.open_console_stream(server, port)
    loop = asyncio.get_running_loop()
    master = _masters.get(server.pk)
    if master is None or master.identity != _identity(server):
        master = await loop.run_in_executor(streams.openers, master_for, server)
    for attempt in (1, 2):
        if master.control is None:
            return await aiossh.open_console_stream(server, port)
        try:
            return await _forward(master, port, server.name)
        except MasterGone as exc:
            if attempt == 2:
                raise ConnectionFailed(f"the SSH master for server {server.name} does not answer: {exc}") from None
            logger.info("SSH master for server %s is gone (%s); starting a new one", server.name, exc)
            master = await loop.run_in_executor(streams.openers, master_for, server, master)
    raise AssertionError("unreachable")
