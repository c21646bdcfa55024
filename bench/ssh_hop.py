#!/usr/bin/env python
"""SSH hop benchmark: paramiko (ovmweb's transport) vs asyncssh vs OpenSSH multiplexed over a control socket.

Every candidate reaches the same loopback target through the loopback sshd of
scripts/start-services.sh (port in var/ssh/port, client key var/ssh/id_ed25519,
host key pinned to var/ssh/host_fingerprint), one SSH connection per candidate
shared by its sessions, like ovmweb's transport pool:
  paramiko  ovmweb.tunnels.ssh.connect (AES-128-GCM first, 6 MiB window, 256 KiB packets, pinned
            key policy), a direct-tcpip channel per session, read and written through
            ovmweb.tunnels.streams (the console proxy's own code);
  asyncssh  asyncssh.connect with known_hosts built from the pinned key, AES-128-GCM first, a
            direct-tcpip channel per session by conn.open_connection (6 MiB window, 256 KiB packets);
  openssh   ovmweb.tunnels.openssh (the consoles' default hop): one `ssh` master with ControlPersist
            (known_hosts holding the pinned key, StrictHostKeyChecking=yes, AES-128-GCM first), a
            stdio forward per session asked over its control socket with two socket pairs handed
            over, read and written through ovmweb.tunnels.streams;
  direct    no SSH: a TCP connection straight to the target, the reader's own cost.
Before measuring, each SSH candidate must refuse a host key other than the pinned one.

Per candidate and round: a --stream-mib download and upload (SHA-256 of each checked), client CPU
per GiB (this process's user + system time; for openssh plus the ssh master's, from /proc, in
10 ms clock ticks: streams much shorter than the default 256 MiB give coarse figures), and
the round trip of --rtt-count 1-byte frames (p50, p99); figures are the medians of --rounds rounds,
the candidates' order rotating from round to round. The table goes to stderr; the last line is
paramiko_mib_s=.. asyncssh_mib_s=.. openssh_mib_s=.. paramiko_cpu=.. asyncssh_cpu=.. openssh_cpu=..
(download MiB/s and CPU s/GiB).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, free_port, isolated_django, wait_port

SSH_DIR = ROOT / "var" / "ssh"
HEADER = 9  # mode (1 byte) + length (8 bytes)
DIGEST = 32
BLOCK_SIZE = 4 << 20
READ_SIZE = 256 << 10  # what the console consumer reads at once
UPLOAD_CHUNK = 64 << 10  # one browser WebSocket message
WINDOW_SIZE = 6 << 20
MAX_PACKET_SIZE = 256 << 10
CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr", "aes256-ctr")
GIB = 1 << 30


# --- the target (a stand-in for a console port), run as a subprocess --------------------


async def _target_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, block: bytes, digests) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        header = await reader.readexactly(HEADER)
        mode, length = header[:1], int.from_bytes(header[1:], "big")
        if mode == b"D":  # download: `length` random bytes, then their SHA-256
            if length not in digests:
                digests[length] = _stream_digest(block, length)
            view, left = memoryview(block), length
            while left:
                n = min(left, len(block))
                writer.write(view[:n])
                await writer.drain()
                left -= n
            writer.write(digests[length])
            await writer.drain()
        elif mode == b"U":  # upload: sink `length` bytes, answer their SHA-256
            digest, left = hashlib.sha256(), length
            while left:
                data = await reader.read(min(left, READ_SIZE))
                if not data:
                    break
                digest.update(data)
                left -= len(data)
            writer.write(digest.digest())
            await writer.drain()
        elif mode == b"E":  # echo
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def _stream_digest(block: bytes, length: int) -> bytes:
    digest, left = hashlib.sha256(), length
    while left:
        n = min(left, len(block))
        digest.update(block[:n])
        left -= n
    return digest.digest()


def run_target(port: int) -> None:
    block, digests = os.urandom(BLOCK_SIZE), {}

    async def main():
        server = await asyncio.start_server(
            lambda r, w: _target_session(r, w, block, digests), "127.0.0.1", port, backlog=256
        )
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- helpers -----------------------------------------------------------------------------


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Pin:
    """The loopback sshd's address, client key and pinned host key (as a known_hosts line)."""

    def __init__(self) -> None:
        missing = [n for n in ("id_ed25519", "host_fingerprint", "port") if not (SSH_DIR / n).exists()]
        if missing:
            raise SystemExit(f"run `bash scripts/start-services.sh` first (missing var/ssh/{missing})")
        self.port = int((SSH_DIR / "port").read_text())
        self.key_path = SSH_DIR / "id_ed25519"
        self.fingerprint = (SSH_DIR / "host_fingerprint").read_text().strip()
        self.known_hosts_line = self._pinned_key_line()

    def _pinned_key_line(self) -> str:
        """The key the server offers, accepted only if its fingerprint is the pinned one."""
        import paramiko

        from ovmweb.tunnels.ssh import host_key_fingerprint, normalize_fingerprint

        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            transport = paramiko.Transport(sock)
            try:
                transport.get_security_options().key_types = ("ssh-ed25519",)
                transport.start_client(timeout=10)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
        if host_key_fingerprint(key) != normalize_fingerprint(self.fingerprint):
            raise SystemExit(f"sshd offers {host_key_fingerprint(key)}, pinned is {self.fingerprint}")
        return self.known_line(key.get_name(), key.get_base64())

    def known_line(self, key_type: str, base64: str) -> str:
        return f"[127.0.0.1]:{self.port} {key_type} {base64}\n"

    @staticmethod
    def other_key() -> tuple[str, str]:
        """A host key that is not the server's (for the refusal check)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
        key_type, base64 = raw.decode().split()[:2]
        return key_type, base64


# --- sessions: a byte stream with async read/write/close ---------------------------------


class StreamSession:
    """An ovmweb ConsoleStream (SSH channel or socket), driven the way the console consumer drives it."""

    def __init__(self, stream) -> None:
        self.stream = stream

    async def read(self, size: int) -> bytes:
        return await self.stream.read(size)

    async def write(self, data: bytes) -> None:
        await self.stream.write(data)

    async def close(self) -> None:
        await self.stream.close()


class AsyncsshSession:
    def __init__(self, reader, writer) -> None:
        self.reader, self.writer = reader, writer

    async def read(self, size: int) -> bytes:
        return await self.reader.read(size)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()


# --- candidates ---------------------------------------------------------------------------


class Direct:
    name = "direct"
    label = "direct TCP, no SSH (the reader's own cost)"

    async def setup(self) -> None:
        pass

    async def open(self, port: int):
        from ovmweb.tunnels.streams import SocketStream

        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return StreamSession(SocketStream(sock, asyncio.get_running_loop()))

    def cpu(self) -> float:
        return self_cpu()

    async def close(self) -> None:
        pass


class Paramiko:
    name = "paramiko"
    label = "paramiko as ovmweb runs it (AES-128-GCM, 6 MiB window, 256 KiB packets)"

    def __init__(self, pin: Pin) -> None:
        self.pin = pin

    def _connect(self, fingerprint: str):
        from ovmweb.tunnels import ssh

        return ssh.connect(
            hostname="127.0.0.1",
            port=self.pin.port,
            username="root",
            private_key=self.pin.key_path.read_text(),
            expected_fingerprint=fingerprint,
        )

    async def setup(self) -> None:
        import base64

        from ovmweb.errors import HostKeyMismatch

        _, other = Pin.other_key()
        wrong = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(other)).digest()).decode()
        try:
            self._connect(wrong).close()
        except HostKeyMismatch:
            pass
        else:
            raise SystemExit("paramiko accepted a host key other than the pinned one")
        self.client = self._connect(self.pin.fingerprint)
        self.transport = self.client.get_transport()
        print(f"paramiko: {self.transport.remote_cipher}, pinned key checked", file=sys.stderr)

    async def open(self, port: int):
        from ovmweb.tunnels.streams import ChannelStream, openers

        loop = asyncio.get_running_loop()
        channel = await loop.run_in_executor(
            openers,
            lambda: self.transport.open_channel("direct-tcpip", ("127.0.0.1", port), ("127.0.0.1", 0), timeout=10),
        )
        return StreamSession(ChannelStream(channel, loop))

    def cpu(self) -> float:
        return self_cpu()

    async def close(self) -> None:
        self.client.close()


class Asyncssh:
    name = "asyncssh"
    label = "asyncssh (AES-128-GCM, 6 MiB window, 256 KiB packets)"

    def __init__(self, pin: Pin, *, window: int = WINDOW_SIZE, max_pktsize: int = MAX_PACKET_SIZE) -> None:
        self.pin = pin
        self.window, self.max_pktsize = window, max_pktsize

    async def _connect(self, known_hosts_line: str):
        import asyncssh

        return await asyncssh.connect(
            "127.0.0.1",
            self.pin.port,
            username="root",
            client_keys=[str(self.pin.key_path)],
            known_hosts=asyncssh.import_known_hosts(known_hosts_line),
            encryption_algs=list(CIPHERS),
            compression_algs=["none"],
            server_host_key_algs=["ssh-ed25519"],
            agent_path=None,
            config=[],
            keepalive_interval=15,
        )

    async def setup(self) -> None:
        import asyncssh

        try:
            conn = await self._connect(self.pin.known_line(*Pin.other_key()))
        except asyncssh.HostKeyNotVerifiable:
            pass
        else:
            conn.close()
            raise SystemExit("asyncssh accepted a host key other than the pinned one")
        self.conn = await self._connect(self.pin.known_hosts_line)
        cipher = self.conn.get_extra_info("recv_cipher")
        print(f"asyncssh {asyncssh.__version__}: {cipher}, pinned key checked", file=sys.stderr)

    async def open(self, port: int):
        reader, writer = await self.conn.open_connection(
            "127.0.0.1", port, window=self.window, max_pktsize=self.max_pktsize
        )
        return AsyncsshSession(reader, writer)

    def cpu(self) -> float:
        return self_cpu()

    async def close(self) -> None:
        self.conn.close()
        await self.conn.wait_closed()


class Openssh:
    name = "openssh"
    label = "OpenSSH master as ovmweb runs it (a mux stdio forward per session, two socket pairs)"

    def __init__(self, pin: Pin) -> None:
        self.pin = pin

    def _server(self, host_key: str, fingerprint: str):
        from ovmweb.inventory.models import Server
        from ovmweb.tunnels.credentials import encrypt_credentials

        return Server(
            pk=1 + os.getpid(),
            name="bench",
            hostname="127.0.0.1",
            ssh_port=self.pin.port,
            ssh_user="root",
            transport="ssh",
            host_key=host_key,
            host_key_fingerprint=fingerprint,
            credentials_encrypted=encrypt_credentials({"private_key": self.pin.key_path.read_text()}),
        )

    async def setup(self) -> None:
        import base64

        from ovmweb.errors import HostKeyMismatch
        from ovmweb.tunnels import openssh

        key_type, other = Pin.other_key()
        wrong = "SHA256:" + base64.b64encode(hashlib.sha256(base64.b64decode(other)).digest()).decode()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, openssh.master_for, self._server(f"{key_type} {other}", wrong))
        except HostKeyMismatch:
            pass
        else:
            raise SystemExit("OpenSSH accepted a host key other than the pinned one")
        pinned = " ".join(self.pin.known_hosts_line.split()[1:3])
        self.server = self._server(pinned, self.pin.fingerprint)
        self.master = await loop.run_in_executor(None, openssh.master_for, self.server)
        self.master_pid = next(
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and f"ControlPath={self.master.control}".encode() in entry.joinpath("cmdline").read_bytes().split(b"\0")
        )
        version = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        print(f"openssh: {version}, master pid {self.master_pid}, pinned key checked", file=sys.stderr)

    async def open(self, port: int):
        from ovmweb.tunnels import openssh

        return StreamSession(await openssh._forward(self.master, port, "bench"))

    def cpu(self) -> float:
        return self_cpu() + self.helper_cpu()

    def helper_cpu(self) -> float:
        return proc_cpu(self.master_pid)

    async def close(self) -> None:
        from ovmweb.tunnels import openssh

        openssh.close_server(self.server.pk)


# --- measurements -------------------------------------------------------------------------


def helper_cpu(candidate) -> float:
    """CPU of a process other than this one that the candidate runs (the ssh master), 0 if none."""
    return candidate.helper_cpu() if hasattr(candidate, "helper_cpu") else 0.0


async def download(candidate, port: int, length: int) -> tuple[float, float, float, float]:
    """(MiB/s, CPU s/GiB, of which another process's, open ms) of one download; raises if the stream is not intact."""
    t_open = time.perf_counter()
    session = await candidate.open(port)
    opened = time.perf_counter() - t_open
    try:
        cpu0, helper0, t0 = candidate.cpu(), helper_cpu(candidate), time.perf_counter()
        await session.write(b"D" + length.to_bytes(8, "big"))
        digest, got, tail, total = hashlib.sha256(), 0, b"", length + DIGEST
        while got < total:
            data = await session.read(READ_SIZE)
            if not data:
                raise RuntimeError(f"{candidate.name}: download ended after {got} of {total} bytes")
            body = max(0, min(len(data), length - got))
            if body:
                digest.update(data[:body] if body < len(data) else data)
            if body < len(data):
                tail += data[body:]
            got += len(data)
        elapsed, cpu = time.perf_counter() - t0, candidate.cpu() - cpu0
        helper = helper_cpu(candidate) - helper0
    finally:
        await session.close()
    if tail != digest.digest():
        raise RuntimeError(f"{candidate.name}: downloaded stream corrupted (SHA-256 mismatch)")
    return length / (1 << 20) / elapsed, cpu * GIB / length, helper * GIB / length, opened * 1000


async def upload(candidate, port: int, length: int, block: bytes, expected: bytes) -> tuple[float, float]:
    session = await candidate.open(port)
    try:
        cpu0, t0 = candidate.cpu(), time.perf_counter()
        await session.write(b"U" + length.to_bytes(8, "big"))
        left, offset = length, 0
        while left:
            n = min(left, UPLOAD_CHUNK, len(block) - offset)
            await session.write(block[offset : offset + n])
            offset = (offset + n) % len(block)
            left -= n
        answer = b""
        while len(answer) < DIGEST:
            data = await session.read(DIGEST - len(answer))
            if not data:
                break
            answer += data
        elapsed, cpu = time.perf_counter() - t0, candidate.cpu() - cpu0
    finally:
        await session.close()
    if answer != expected:
        raise RuntimeError(f"{candidate.name}: uploaded stream corrupted (SHA-256 mismatch)")
    return length / (1 << 20) / elapsed, cpu * GIB / length


async def round_trips(candidate, port: int, count: int) -> tuple[float, float]:
    session = await candidate.open(port)
    samples = []
    try:
        await session.write(b"E" + (0).to_bytes(8, "big"))
        for _ in range(count + 20):
            t0 = time.perf_counter()
            await session.write(b"x")
            data = await session.read(1)
            samples.append(time.perf_counter() - t0)
            if data != b"x":
                raise RuntimeError(f"{candidate.name}: echo answered {data!r}")
    finally:
        await session.close()
    samples = sorted(samples[20:])  # the first frames warm up
    return samples[len(samples) // 2] * 1000, samples[int(len(samples) * 0.99)] * 1000


def upload_material(length: int) -> tuple[bytes, bytes]:
    block = os.urandom(BLOCK_SIZE)
    digest, left, offset = hashlib.sha256(), length, 0
    while left:
        n = min(left, UPLOAD_CHUNK, len(block) - offset)
        digest.update(block[offset : offset + n])
        offset = (offset + n) % len(block)
        left -= n
    return block, digest.digest()


def make_candidates(names: list[str]) -> list:
    """The candidates named, in that order; one whose client is missing is skipped with a message."""
    pin = Pin()
    candidates = []
    for name in names:
        if name == "direct":
            candidates.append(Direct())
        elif name == "paramiko":
            candidates.append(Paramiko(pin))
        elif name == "asyncssh":
            try:
                import asyncssh  # noqa: F401
            except ImportError:
                print(
                    "asyncssh is not installed: skipping its candidate (pip install -e '.[dev]' installs it)",
                    file=sys.stderr,
                )
                continue
            candidates.append(Asyncssh(pin))
        elif name == "openssh":
            if shutil.which("ssh") is None:
                print("no OpenSSH client (ssh) on PATH: skipping its candidate", file=sys.stderr)
                continue
            candidates.append(Openssh(pin))
        else:
            raise SystemExit(f"unknown candidate {name!r}")
    return candidates


async def measure(args: argparse.Namespace, target_port: int) -> dict[str, dict[str, float]]:
    candidates = make_candidates(args.only.split(","))
    length = args.stream_mib << 20
    block, expected = upload_material(length)
    samples: dict[str, dict[str, list[float]]] = {c.name: {} for c in candidates}
    try:
        for candidate in candidates:
            await candidate.setup()
        print(f"load average before: {loadavg()}", file=sys.stderr)
        for r in range(args.rounds):
            order = candidates[r % len(candidates) :] + candidates[: r % len(candidates)]
            for candidate in order:
                figures = samples[candidate.name]
                mib_s, cpu, helper, opened = await download(candidate, target_port, length)
                up_mib_s, up_cpu = await upload(candidate, target_port, length, block, expected)
                p50, p99 = await round_trips(candidate, target_port, args.rtt_count)
                for key, value in (
                    ("down", mib_s),
                    ("down_cpu", cpu),
                    ("down_helper", helper),
                    ("up", up_mib_s),
                    ("up_cpu", up_cpu),
                    ("p50", p50),
                    ("p99", p99),
                    ("open", opened),
                ):
                    figures.setdefault(key, []).append(value)
                print(
                    f"round {r + 1} {candidate.name}: down {mib_s:.0f} MiB/s {cpu:.2f} s/GiB "
                    f"({helper:.2f} another process), "
                    f"up {up_mib_s:.0f} MiB/s {up_cpu:.2f} s/GiB, rtt p50 {p50:.3f} p99 {p99:.3f} ms, "
                    f"load {loadavg().split()[0]}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for candidate in candidates:
            try:
                await candidate.close()
            except Exception as exc:  # a candidate that failed to set up has nothing to close
                print(f"{candidate.name}: close failed: {exc!r}", file=sys.stderr)
    print(f"load average after: {loadavg()}", file=sys.stderr)
    labels = {c.name: c.label for c in candidates}
    result = {}
    for name, figures in samples.items():
        if figures:
            result[name] = {key: statistics.median(values) for key, values in figures.items()}
            result[name]["label"] = labels[name]
    return result


def report(result: dict, args: argparse.Namespace) -> None:
    print(
        f"\n{args.stream_mib} MiB streams (SHA-256 checked), {args.rtt_count} 1-byte round trips, "
        f"median of {args.rounds} rounds; CPU is the client side's, s/GiB",
        file=sys.stderr,
    )
    print(
        "| candidate | down MiB/s | down CPU | up MiB/s | up CPU | RTT p50 ms | RTT p99 ms | open ms |", file=sys.stderr
    )
    print("|---|---|---|---|---|---|---|---|", file=sys.stderr)
    for figures in result.values():
        print(
            f"| {figures['label']} | {figures['down']:.0f} | {figures['down_cpu']:.2f} | {figures['up']:.0f} | "
            f"{figures['up_cpu']:.2f} | {figures['p50']:.3f} | {figures['p99']:.3f} | {figures['open']:.1f} |",
            file=sys.stderr,
        )
    for name, figures in result.items():
        if figures["down_helper"]:
            print(
                f"{name}: of the download's CPU, {figures['down_helper']:.2f} s/GiB is the ssh master's",
                file=sys.stderr,
            )
    fields = []
    for key, name in (("down", "mib_s"), ("down_cpu", "cpu")):
        for candidate in ("paramiko", "asyncssh", "openssh"):
            value = result.get(candidate, {}).get(key)
            fields.append(f"{candidate}_{name}=" + ("skipped" if value is None else f"{value:.2f}"))
    print(" ".join(fields), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="rounds per candidate (medians)")
    parser.add_argument("--rtt-count", type=int, default=2000)
    parser.add_argument(
        "--only", default="direct,paramiko,asyncssh,openssh", help="comma-separated candidates, in this order"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.target:
        run_target(args.target)
        return
    var, _env = isolated_django("ssh-hop-")  # the openssh candidate is ovmweb's module, on a Server row
    port = free_port()
    target = subprocess.Popen([sys.executable, __file__, "--target", str(port)])
    try:
        wait_port(port)
        result = asyncio.run(measure(args, port))
    finally:
        target.terminate()
        target.wait()
        shutil.rmtree(var, ignore_errors=True)
    report(result, args)


if __name__ == "__main__":
    main()
