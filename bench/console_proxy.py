#!/usr/bin/env python
"""Console proxy benchmark: ovmweb's consumer + shared SSH transport vs websockify + OpenSSH `ssh -L`.

Everything on loopback, one target, one run:
  1. throughput of a STREAM_MIB stream each way (SHA-256 of every stream checked), the median of
     --rounds runs that alternate between the two proxies;
  2. round trip of 1-byte frames (p50, p99) vs a direct TCP connection to the target;
  3. 500 concurrent sessions streaming at once: every stream intact to its last byte, memory per session.
With --soak: 200 sessions of mixed traffic (bulk download, bulk upload, 1-byte echo) for --soak-seconds
(default 300); a session that moves nothing for STALL_SECONDS is a stall; every stream is checked by SHA-256.

Both proxies reach the same target the same way: through the loopback sshd of
scripts/start-services.sh (127.0.0.1:2222, key var/ssh/id_ed25519, host key
pinned). ovmweb runs under daphne in a subprocess with a scratch SQLite DB; its SSH hop is
an OpenSSH master (ovmweb's default) unless --ssh asyncssh or paramiko (OVMWEB_CONSOLE_SSH in that
subprocess's environment). The proxy's CPU and memory are daphne's plus its ssh master's (detached
from daphne, found by its command line), websockify's plus its ssh client's.
Last line: throughput_ratio=X upload_ratio=U cpu_ratio=C p99_added_ms=Y sessions_ok=N/500
(throughput_ratio is download's; cpu_ratio the worse of the two directions' proxy CPU s/GiB ratios).
Soak's last line: stalls=S corrupted=K sessions=200 operations=N
With --burst N: N consoles opened at once through each proxy while --burst-busy bulk downloads
run; prints each proxy's opening times (p50, p99, max) and failures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, free_port, isolated_django, wait_port

VENV_BIN = Path(sys.executable).parent
BLOCK = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB, deterministic
HEADER = 9  # mode (1 byte) + length (8 bytes)
HANDSHAKE_TIMEOUT = 20  # seconds an opening WebSocket may take, as runovmweb gives it


# --- the target (a stand-in for QEMU's console port), run as a subprocess ---------------


async def _target_session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        header = await reader.readexactly(HEADER)
        mode, length = header[:1], int.from_bytes(header[1:], "big")
        if mode == b"D":
            left = length
            while left:
                chunk = BLOCK[: min(left, len(BLOCK))]
                writer.write(chunk)
                await writer.drain()
                left -= len(chunk)
        elif mode == b"U":
            digest, left = hashlib.sha256(), length
            while left:
                data = await reader.read(min(left, 1 << 20))
                if not data:
                    break
                digest.update(data)
                left -= len(data)
            writer.write(digest.digest())
            await writer.drain()
        elif mode == b"E":
            while data := await reader.read(1 << 16):
                writer.write(data)
                await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


def run_target(port: int) -> None:
    async def main():
        server = await asyncio.start_server(_target_session, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# --- helpers ----------------------------------------------------------------------------


def expected_digest(length: int) -> str:
    digest, left = hashlib.sha256(), length
    while left:
        chunk = BLOCK[: min(left, len(BLOCK))]
        digest.update(chunk)
        left -= len(chunk)
    return digest.hexdigest()


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time used so far by these processes (all their threads, and their reaped children:
    websockify's per-connection processes are gone by the time a stream has ended)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int(entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def ssh_masters() -> list[int]:
    """ovmweb's OpenSSH masters (OVMWEB_CONSOLE_SSH=openssh): they run detached from daphne, yet their
    CPU and memory are the proxy's."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = entry.joinpath("cmdline").read_bytes()
            except OSError:
                continue
            if b"ControlMaster=yes" in command and b"/ovmweb-ssh-" in command:
                found.append(int(entry.name))
    return found


# --- the WebSocket client side ----------------------------------------------------------


class Proxy:
    """How to open a WebSocket to the target through one proxy."""

    def __init__(self, name: str, url_factory, headers_factory=lambda: {}, pids=lambda: []):
        self.name, self.url_factory, self.headers_factory = name, url_factory, headers_factory
        self.pids = pids  # the proxy's processes, for CPU time per byte (independent of the machine's load)

    async def connect(self):
        return (await self.connect_timed())[0]

    async def connect_timed(self):
        """The WebSocket, and the seconds its opening took (the ticket's issue not counted)."""
        import websockets

        url = await self.url_factory()
        start = time.perf_counter()
        ws = await websockets.connect(
            url,
            additional_headers=self.headers_factory(),
            max_size=None,
            compression=None,
            max_queue=4,
            write_limit=1 << 20,
            open_timeout=60,
            close_timeout=60,
        )
        return ws, time.perf_counter() - start


async def download(proxy: Proxy, length: int) -> tuple[float, bool]:
    ws = await proxy.connect()
    digest, got = hashlib.sha256(), 0
    start = time.perf_counter()
    await ws.send(b"D" + length.to_bytes(8, "big"))
    try:
        async for message in ws:  # until the proxy closes after the target's last byte
            digest.update(message)
            got += len(message)
    except Exception:
        pass
    elapsed = time.perf_counter() - start
    return elapsed, got == length and digest.hexdigest() == expected_digest(length)


async def upload(proxy: Proxy, length: int, frame: int = 1 << 20) -> tuple[float, bool]:
    ws = await proxy.connect()
    start = time.perf_counter()
    await ws.send(b"U" + length.to_bytes(8, "big"))
    left = length
    while left:
        chunk = BLOCK[: min(left, frame)]
        await ws.send(chunk)
        left -= len(chunk)
    reply = b""
    while len(reply) < 32:
        reply += await ws.recv()
    elapsed = time.perf_counter() - start
    await ws.close()
    return elapsed, reply.hex() == expected_digest(length)


async def rtt_ws(proxy: Proxy, count: int) -> list[float]:
    ws = await proxy.connect()
    await ws.send(b"E" + (0).to_bytes(8, "big"))
    samples = []
    for i in range(count + 100):
        start = time.perf_counter()
        await ws.send(b"x")
        await ws.recv()
        if i >= 100:
            samples.append((time.perf_counter() - start) * 1000)
    await ws.close()
    return samples


async def rtt_tcp(port: int, count: int) -> list[float]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    writer.write(b"E" + (0).to_bytes(8, "big"))
    samples = []
    for i in range(count + 100):
        start = time.perf_counter()
        writer.write(b"x")
        await writer.drain()
        await reader.readexactly(1)
        if i >= 100:
            samples.append((time.perf_counter() - start) * 1000)
    writer.close()
    return samples


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def concurrent(proxy: Proxy, sessions: int, length: int, pids_fn) -> tuple[int, float]:
    base = rss_kib(pids_fn())
    peak = base
    done = asyncio.Event()

    async def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib(pids_fn()))
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    # Connect all first, then stream at once.
    sockets = await asyncio.gather(*(proxy.connect() for _ in range(sessions)), return_exceptions=True)

    failures: dict[str, int] = {}

    def failed(reason: str) -> bool:
        failures[reason] = failures.get(reason, 0) + 1
        return False

    async def stream(ws) -> bool:
        if isinstance(ws, BaseException):
            return failed(f"connect: {type(ws).__name__}")
        digest, got = hashlib.sha256(), 0
        try:
            await ws.send(b"D" + length.to_bytes(8, "big"))
            async for message in ws:
                digest.update(message)
                got += len(message)
        except Exception as exc:
            return failed(f"stream: {type(exc).__name__} after {got >> 10} KiB")
        if got != length:
            return failed(f"short: {got} of {length} bytes, close code {ws.close_code}")
        return digest.hexdigest() == expected_digest(length) or failed("sha256 mismatch")

    results = await asyncio.gather(*(stream(ws) for ws in sockets))
    if failures:
        print(f"{proxy.name} failures: {failures}", flush=True)
    done.set()
    await sampler
    return sum(results), (peak - base) / sessions


# --- a burst of openings while bulk streams run ------------------------------------------


async def measure_burst(proxy: Proxy, sessions: int, busy: int, bulk: int) -> tuple[list[float], dict[str, int]]:
    """Open ``sessions`` consoles at once while ``busy`` bulk downloads keep the proxy working;
    each opened console must echo a byte. Returns the opening times of the good ones and the failures."""
    stop = asyncio.Event()

    async def keep_busy():
        while not stop.is_set():
            await download(proxy, bulk)

    loaders = [asyncio.create_task(keep_busy()) for _ in range(busy)]
    await asyncio.sleep(2 if busy else 0)  # the streams are flowing
    failures: dict[str, int] = {}

    async def one() -> float | None:
        try:
            ws, seconds = await proxy.connect_timed()
        except Exception as exc:
            failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
            return None
        try:
            await ws.send(b"E" + (0).to_bytes(8, "big"))
            await ws.send(b"x")
            if await asyncio.wait_for(ws.recv(), 60) != b"x":
                failures["echo mismatch"] = failures.get("echo mismatch", 0) + 1
                return None
        except Exception as exc:
            failures[f"echo {type(exc).__name__}"] = failures.get(f"echo {type(exc).__name__}", 0) + 1
            return None
        finally:
            await ws.close()
        return seconds

    times = await asyncio.gather(*(one() for _ in range(sessions)))
    stop.set()
    await asyncio.gather(*loaders, return_exceptions=True)
    return [t for t in times if t is not None], failures


def print_burst(name: str, times: list[float], failures: dict[str, int], sessions: int) -> None:
    times = sorted(times)
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000 if times else float("nan")  # noqa: E731
    print(
        f"{name} burst: opened {len(times)}/{sessions} p50={pick(0.5):.0f} ms p99={pick(0.99):.0f} ms "
        f"max={pick(1.0):.0f} ms failures={failures}",
        flush=True,
    )


# --- the soak: many sessions of mixed traffic for minutes --------------------------------

STALL_SECONDS = 10  # a session that moves nothing this long is stalled (the proxy's watchdog acts at 5 s)


class Soak:
    def __init__(self, proxy: Proxy, seconds: float, bulk: int):
        self.proxy, self.bulk = proxy, bulk
        self.deadline = time.monotonic() + seconds
        self.stalls = self.corrupted = self.operations = self.errors = 0
        self.moved = 0

    async def _recv(self, ws):
        try:
            return await asyncio.wait_for(ws.recv(), STALL_SECONDS)
        except TimeoutError:
            self.stalls += 1
            raise

    async def download(self) -> None:
        ws = await self.proxy.connect()
        digest, got = hashlib.sha256(), 0
        await ws.send(b"D" + self.bulk.to_bytes(8, "big"))
        try:
            while got < self.bulk:
                message = await self._recv(ws)
                digest.update(message)
                got += len(message)
        finally:
            await ws.close()
        self.moved += got
        if got != self.bulk or digest.hexdigest() != expected_digest(self.bulk):
            self.corrupted += 1

    async def upload(self) -> None:
        ws = await self.proxy.connect()
        await ws.send(b"U" + self.bulk.to_bytes(8, "big"))
        left = self.bulk
        try:
            while left:
                chunk = BLOCK[: min(left, 256 << 10)]
                try:
                    await asyncio.wait_for(ws.send(chunk), STALL_SECONDS)
                except TimeoutError:
                    self.stalls += 1
                    raise
                left -= len(chunk)
            reply = b""
            while len(reply) < 32:
                reply += await self._recv(ws)
        finally:
            await ws.close()
        self.moved += self.bulk
        if reply.hex() != expected_digest(self.bulk):
            self.corrupted += 1

    async def echo(self) -> None:
        ws = await self.proxy.connect()
        await ws.send(b"E" + (0).to_bytes(8, "big"))
        try:
            for i in range(200):
                byte = bytes([i])
                await ws.send(byte)
                if await self._recv(ws) != byte:
                    self.corrupted += 1
                    return
                await asyncio.sleep(0.01)
        finally:
            await ws.close()
        self.moved += 200

    async def session(self, kind: str) -> None:
        operation = getattr(self, kind)
        while time.monotonic() < self.deadline:
            try:
                await operation()
                self.operations += 1
            except TimeoutError:
                pass  # counted as a stall where it happened
            except Exception as exc:
                self.errors += 1
                print(f"soak {kind}: {type(exc).__name__}: {exc}", flush=True)
                await asyncio.sleep(1)
            await asyncio.sleep(0.2)

    async def report(self) -> None:
        while time.monotonic() < self.deadline:
            await asyncio.sleep(30)
            print(
                f"soak: {self.operations} operations, {self.moved >> 20} MiB, stalls={self.stalls} "
                f"corrupted={self.corrupted} errors={self.errors}, load {Path('/proc/loadavg').read_text().split()[0]}",
                flush=True,
            )


async def soak(proxy: Proxy, sessions: int, seconds: float, bulk: int) -> Soak:
    run = Soak(proxy, seconds, bulk)
    kinds = ("download", "upload", "echo")
    await asyncio.gather(run.report(), *(run.session(kinds[i % 3]) for i in range(sessions)))
    return run


# --- setting up both proxies --------------------------------------------------------------


def setup_django() -> str:
    var, _ = isolated_django(
        "ovmweb-bench-console-",
        OVMWEB_CONSOLE_MAX_PER_VM="10000",
        OVMWEB_CONSOLE_MAX_PER_USER="10000",
        OVMWEB_EMBEDDED_WORKER="0",
        OVMWEB_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
    )
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return var


def make_vm(target_port: int):
    from django.contrib.auth import get_user_model

    from ovmweb.inventory import choices
    from ovmweb.inventory.models import Server, ServerPool, VirtualMachine
    from ovmweb.tunnels.credentials import encrypt_credentials

    ssh_dir = ROOT / "var" / "ssh"
    user = get_user_model().objects.create_superuser("bench", "bench@example.com", "pw-bench-123")
    pool = ServerPool.objects.create(name="bench")
    server = Server.objects.create(
        name="sshd",
        hostname="127.0.0.1",
        ssh_port=int((ssh_dir / "port").read_text()),
        ssh_user="root",
        transport=choices.Transport.SSH,
        status=choices.ServerStatus.RUNNING,
        server_pool=pool,
        host_key_fingerprint=(ssh_dir / "host_fingerprint").read_text().strip(),
        host_key=" ".join((ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]),
        credentials_encrypted=encrypt_credentials({"private_key": (ssh_dir / "id_ed25519").read_text()}),
    )
    vm = VirtualMachine.objects.create(
        name="bench-vm",
        domain_type=choices.DomainType.HVM,
        os_type=choices.OsType.OTHER_LINUX,
        server_pool=pool,
        server=server,
        vcpus=1,
        max_vcpus=1,
        memory_mib=128,
        max_memory_mib=128,
    )
    VirtualMachine.objects.filter(pk=vm.pk).update(status=choices.VmStatus.RUNNING, vnc_port=target_port)
    vm.refresh_from_db()
    return user, vm


def session_cookie(user) -> str:
    """A Cookie header value logging ``user`` in."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def start_asgi_server(server: str, port: int, var: str, ssh: str = "paramiko") -> subprocess.Popen:
    """ovmweb's ASGI application under daphne or uvicorn, logging into ``var``/server.log.

    ``ssh`` is its console SSH hop (OVMWEB_CONSOLE_SSH: openssh, asyncssh or paramiko)."""
    command = {
        "daphne": [
            str(VENV_BIN / "daphne"),
            *("-b", "127.0.0.1", "-p", str(port)),
            *("--websocket_connect_timeout", str(HANDSHAKE_TIMEOUT)),  # as runovmweb
            "ovmweb.asgi:application",
        ],
        "uvicorn": [
            str(VENV_BIN / "uvicorn"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--ws",
            "websockets",
            "--no-access-log",
            "--lifespan",
            "off",
            "ovmweb.asgi:application",
        ],
    }[server]
    server_log = open(Path(var) / "server.log", "w")
    env = {**os.environ, "OVMWEB_CONSOLE_SSH": ssh}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT)


def start_ssh_forward(var: str, forward_port: int, target_port: int) -> subprocess.Popen:
    """OpenSSH local forward to the target through the loopback sshd (host key pinned)."""
    ssh_dir = ROOT / "var" / "ssh"
    ssh_port = int((ssh_dir / "port").read_text())
    known = Path(var) / "known_hosts"
    host_key = (ssh_dir / "ssh_host_ed25519_key.pub").read_text().split()
    known.write_text(f"[127.0.0.1]:{ssh_port} {host_key[0]} {host_key[1]}\n")
    return subprocess.Popen(
        [
            "ssh",
            "-N",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "ExitOnForwardFailure=yes",
            "-i",
            str(ssh_dir / "id_ed25519"),
            "-p",
            str(ssh_port),
            "-L",
            f"127.0.0.1:{forward_port}:127.0.0.1:{target_port}",
            "root@127.0.0.1",
        ]
    )


def start_websockify(port: int, forward_port: int) -> subprocess.Popen:
    return subprocess.Popen(
        [str(VENV_BIN / "websockify"), f"127.0.0.1:{port}", f"127.0.0.1:{forward_port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# --- the run ----------------------------------------------------------------------------


async def measure_throughput(proxies: tuple[Proxy, ...], rounds: int, length: int) -> dict:
    """(proxy, direction) -> (median MiB/s, every stream intact)."""
    for proxy in proxies:
        await download(proxy, 8 << 20)  # warm up (SSH transport, daphne imports)
    # Rounds alternate the two proxies, so a burst of load elsewhere on the machine
    # falls on both; each figure is the median of its rounds.
    samples: dict[tuple[str, str], list[tuple[float, float, bool]]] = {}
    for round_no in range(1, rounds + 1):
        for proxy in proxies:
            for direction, fn in (("download", download), ("upload", upload)):
                cpu = cpu_seconds(proxy.pids())
                elapsed, ok = await fn(proxy, length)
                cpu = cpu_seconds(proxy.pids()) - cpu
                rate = length / elapsed / (1 << 20)
                samples.setdefault((proxy.name, direction), []).append((rate, cpu * (1 << 30) / length, ok))
                print(
                    f"round {round_no} {proxy.name:10s} {direction:8s} {length >> 20} MiB: {rate:8.1f} MiB/s "
                    f"sha256 {'ok' if ok else 'MISMATCH'}, proxy CPU {cpu * (1 << 30) / length:.2f} s/GiB",
                    flush=True,
                )
    results = {}
    for (name, direction), runs in samples.items():
        rate = statistics.median(r for r, _, _ in runs)
        results[(name, direction)] = (rate, all(ok for _, _, ok in runs))
        results[(name, direction, "cpu")] = statistics.median(c for _, c, _ in runs)
        print(
            f"{name:10s} {direction:8s} median of {len(runs)}: {rate:8.1f} MiB/s, proxy CPU "
            f"{statistics.median(c for _, c, _ in runs):.2f} s/GiB",
            flush=True,
        )
    return results


async def measure_rtt(proxies: tuple[Proxy, ...], target_port: int, count: int) -> dict[str, list[float]]:
    rtts = {"direct": await rtt_tcp(target_port, count)}
    for proxy in proxies:
        rtts[proxy.name] = await rtt_ws(proxy, count)
    for name, samples in rtts.items():
        print(f"rtt {name:10s} p50={pct(samples, 50):.3f} ms p99={pct(samples, 99):.3f} ms", flush=True)
    return rtts


async def measure_sessions(proxies_and_pids, sessions: int, length: int) -> dict[str, int]:
    """proxy name -> how many of ``sessions`` concurrent streams arrived intact."""
    intact = {}
    for proxy, pids in proxies_and_pids:
        ok, per_session_kib = await concurrent(proxy, sessions, length, pids)
        intact[proxy.name] = ok
        print(
            f"{proxy.name:10s} {sessions} concurrent sessions x {length >> 10} KiB: {ok} intact, "
            f"{per_session_kib:.0f} KiB RSS per session",
            flush=True,
        )
    return intact


def print_server_errors(var: str) -> None:
    """Why sessions failed, from the server's side (tracebacks, refusals)."""
    lines = (Path(var) / "server.log").read_text(errors="replace").splitlines()
    interesting = [line for line in lines if "Error" in line or "refused" in line or "Traceback" in line]
    print("server log:", *interesting[:20], sep="\n  ")


def print_server_stalls(var: str) -> None:
    """What the proxy's own watchdog saw (it logs every stall it recovers)."""
    lines = (Path(var) / "server.log").read_text(errors="replace").splitlines()
    stalled = [line for line in lines if "stalled" in line or "lost its producer" in line]
    print(f"server watchdog: {len(stalled)} stall lines", *stalled[:10], sep="\n  ")


def print_summary(args, results: dict, rtts: dict, sessions: dict) -> None:
    ratios = [results[("ovmweb", d)][0] / results[("websockify", d)][0] for d in ("download", "upload")]
    cpu = [results[("ovmweb", d, "cpu")] / max(results[("websockify", d, "cpu")], 1e-9) for d in ("download", "upload")]
    intact = all(value[1] for key, value in results.items() if len(key) == 2)
    down, up = (ratios[0], ratios[1]) if intact else (0.0, 0.0)
    p99_added = pct(rtts["ovmweb"], 99) - pct(rtts["direct"], 99)
    print(f"ratios download={ratios[0]:.2f} upload={ratios[1]:.2f} streams_intact={intact}")
    print(f"cpu ratios download={cpu[0]:.2f} upload={cpu[1]:.2f}")
    print(f"load average at the end {Path('/proc/loadavg').read_text().split()[0]}")
    print(
        f"throughput_ratio={down:.2f} upload_ratio={up:.2f} cpu_ratio={max(cpu):.2f} "
        f"p99_added_ms={p99_added:.2f} sessions_ok={sessions['ovmweb']}/{args.sessions}"
    )


def stop(procs: list[subprocess.Popen], var: str) -> None:
    for proc in reversed(procs):
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    if os.environ.get("BENCH_KEEP"):
        print("kept", var)
    else:
        shutil.rmtree(var, ignore_errors=True)


def bench(args, var: str, procs: list[subprocess.Popen]) -> None:
    """Start the target and both proxies (each started process goes into ``procs``), then measure."""
    from asgiref.sync import sync_to_async

    from ovmweb.consoles import services

    target_port = free_port()
    procs.append(subprocess.Popen([sys.executable, __file__, "--target", str(target_port)]))
    user, vm = make_vm(target_port)
    cookie = session_cookie(user)
    daphne_port = free_port()
    daphne = start_asgi_server(args.server, daphne_port, var, args.ssh)
    procs.append(daphne)
    # Baseline: OpenSSH local forward to the same sshd (host key pinned), websockify in front.
    forward_port, wsfy_port = free_port(), free_port()
    ssh_client = start_ssh_forward(var, forward_port, target_port)
    procs.append(ssh_client)
    websockify = start_websockify(wsfy_port, forward_port)
    procs.append(websockify)
    for port in (target_port, daphne_port, forward_port, wsfy_port):
        wait_port(port)

    issue = sync_to_async(lambda: services.ticket_issue(user=user, vm=vm, kind="vnc")[1], thread_sensitive=True)

    async def ovm_url():
        return f"ws://127.0.0.1:{daphne_port}/ws/console/vnc/{vm.pk}/?ticket={await issue()}"

    async def wsfy_url():
        return f"ws://127.0.0.1:{wsfy_port}/"

    print(
        f"ovmweb under {args.server}, SSH hop {args.ssh}; load average {Path('/proc/loadavg').read_text().split()[0]}",
        flush=True,
    )
    ovm = Proxy(
        "ovmweb",
        ovm_url,
        lambda: {"Origin": f"http://127.0.0.1:{daphne_port}", "Cookie": cookie},
        pids=lambda: [daphne.pid, *ssh_masters()],
    )
    if args.soak:
        result = asyncio.run(soak(ovm, args.soak_sessions, args.soak_seconds, args.session_kib << 10))
        print_server_stalls(var)
        print(
            f"stalls={result.stalls} corrupted={result.corrupted} sessions={args.soak_sessions} "
            f"operations={result.operations} errors={result.errors} seconds={args.soak_seconds}"
        )
        return
    # websockify forks per connection; the OpenSSH client carries the tunnel (sshd is common to both).
    wsfy = Proxy("websockify", wsfy_url, pids=lambda: process_tree(websockify.pid) + [ssh_client.pid])
    if args.burst:
        for proxy in (ovm, wsfy):
            times, failures = asyncio.run(measure_burst(proxy, args.burst, args.burst_busy, 64 << 20))
            print_burst(proxy.name, times, failures, args.burst)
        return

    async def run():
        results = await measure_throughput((ovm, wsfy), args.rounds, args.stream_mib << 20)
        rtts = await measure_rtt((ovm, wsfy), target_port, args.rtt_count)
        sessions = await measure_sessions(
            ((ovm, ovm.pids), (wsfy, lambda: process_tree(websockify.pid) + [ssh_client.pid])),
            args.sessions,
            args.session_kib << 10,
        )
        return results, rtts, sessions

    results, rtts, sessions = asyncio.run(run())
    if sessions["ovmweb"] != args.sessions:
        print_server_errors(var)
    print_summary(args, results, rtts, sessions)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stream-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5, help="throughput runs per proxy and direction (median)")
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--soak", action="store_true", help="mixed-traffic soak through ovmweb only (see top)")
    parser.add_argument("--soak-sessions", type=int, default=200)
    parser.add_argument("--soak-seconds", type=int, default=300)
    parser.add_argument("--session-kib", type=int, default=1024)
    parser.add_argument("--burst", type=int, default=0, help="only: open this many consoles at once (see --burst-busy)")
    parser.add_argument("--burst-busy", type=int, default=20, help="bulk downloads running during the burst")
    parser.add_argument("--rtt-count", type=int, default=2000)
    parser.add_argument(
        "--server",
        choices=("daphne", "uvicorn"),
        default="daphne",
        help="ASGI server in front of ovmweb's consumer (daphne is what runovmweb uses)",
    )
    parser.add_argument(
        "--ssh",
        choices=("openssh", "asyncssh", "paramiko"),
        default="openssh",
        help="ovmweb's console SSH hop (OVMWEB_CONSOLE_SSH of the server process)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.target:
        run_target(args.target)
        return
    procs: list[subprocess.Popen] = []
    var = setup_django()
    try:
        bench(args, var, procs)
    finally:
        stop(procs, var)


if __name__ == "__main__":
    main()
