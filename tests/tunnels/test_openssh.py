"""The OpenSSH console hop (OVMWEB_CONSOLE_SSH=openssh): a pinned ssh master per server, forwards asked
over its control socket, against the real sshd."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import time
from pathlib import Path

import asyncssh
import pytest

from ovmweb.errors import ConnectionFailed, HostKeyMismatch
from ovmweb.tunnels import aiossh, openssh, streams
from ovmweb.tunnels.credentials import encrypt_credentials
from tests.tunnels.conftest import banner, drain, run
from tests.tunnels.sshd import server_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(sshd):
    server = server_record(sshd)
    yield server
    openssh.close_server(server.pk)


def open_banner(server, port) -> tuple[type, bytes]:
    async def go():
        stream = await openssh.open_console_stream(server, port)
        try:
            return type(stream), await banner(stream)
        finally:
            await stream.close()

    return run(go)


def master_pid(control: str) -> int | None:
    """The pid of the ssh master listening on ``control`` (from /proc: its command line names the path)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = entry.joinpath("cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"ControlPath={control}".encode() in command:
                return int(entry.name)
    return None


def wait_gone(pid: int, control: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not os.path.exists(control) and master_pid(control) is None:
            return
        time.sleep(0.05)
    raise AssertionError(f"ssh master {pid} still there")


def other_host_key() -> tuple[str, str]:
    """A host key that is not the sshd's, and its fingerprint."""
    key = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()
    return key.export_public_key().decode().strip(), aiossh.fingerprint(key)


def test_a_forward_reaches_the_target_and_no_key_stays_on_disk(server, echo_port):
    kind, data = open_banner(server, echo_port)
    assert (kind, data) == (streams.MuxStream, b"SSH-")
    master = openssh._masters[server.pk]
    directory = Path(master.control).parent
    # The key and known_hosts went once the master had authenticated: only its control socket is left.
    assert sorted(path.name for path in directory.iterdir()) == [Path(master.control).name]
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(master.control).st_mode)
    assert stat.S_IMODE(os.stat(master.control).st_mode) == 0o600


def test_the_same_master_serves_every_console_of_a_server(server, echo_port):
    async def go():
        opened = [await openssh.open_console_stream(server, echo_port) for _ in range(5)]
        try:
            assert [await banner(stream) for stream in opened] == [b"SSH-"] * 5
        finally:
            for stream in opened:
                await stream.close()

    run(go)
    control = openssh._masters[server.pk].control
    assert master_pid(control) is not None
    assert len([p for p in Path(control).parent.iterdir() if p.suffix == ".ctl"]) >= 1


def test_another_host_key_is_refused_and_names_what_was_offered(server, echo_port, sshd):
    server.host_key, server.host_key_fingerprint = other_host_key()
    with pytest.raises(HostKeyMismatch) as info:
        open_banner(server, echo_port)
    assert info.value.offered_fingerprint.rstrip("=") == sshd["fingerprint"].rstrip("=")
    assert openssh._masters.get(server.pk) is None


def test_a_recorded_key_that_is_not_the_pinned_fingerprints_is_refused(server, echo_port):
    server.host_key = other_host_key()[0]  # the fingerprint still names the sshd's real key
    with pytest.raises(ConnectionFailed, match="not the pinned fingerprint"):
        open_banner(server, echo_port)


def test_a_changed_host_key_fails_closed_even_with_a_master_running(server, echo_port):
    async def go():
        busy = await openssh.open_console_stream(server, echo_port)
        try:
            server.host_key, server.host_key_fingerprint = other_host_key()
            with pytest.raises(HostKeyMismatch):
                await openssh.open_console_stream(server, echo_port)
        finally:
            await busy.close()

    run(go)


@pytest.mark.parametrize("missing", ["host_key", "private_key"])
def test_a_server_an_ssh_master_cannot_serve_takes_the_asyncssh_hop(server, echo_port, sshd, missing):
    if missing == "host_key":
        server.host_key = ""
    else:  # a password alone: the asyncssh hop logs in with it (here: the key as well, so that it works)
        server.credentials_encrypted = encrypt_credentials({"password": "not-a-key"})
    if missing == "private_key":
        with pytest.raises(ConnectionFailed, match="authentication"):
            open_banner(server, echo_port)  # asyncssh tried the password: no master was started
    else:
        assert open_banner(server, echo_port) == (streams.AsyncsshStream, b"SSH-")
    assert openssh._masters[server.pk].control is None


def test_an_edited_server_gets_a_new_master_and_the_old_one_ends(server, echo_port, sshd):
    open_banner(server, echo_port)
    old = openssh._masters[server.pk].control
    old_pid = master_pid(old)
    assert old_pid is not None
    server.credentials_encrypted = encrypt_credentials({"private_key": sshd["private_key"]})
    assert open_banner(server, echo_port) == (streams.MuxStream, b"SSH-")
    assert openssh._masters[server.pk].control != old
    wait_gone(old_pid, old)


def test_a_dead_master_is_replaced(server, echo_port):
    async def go():
        first = await openssh.open_console_stream(server, echo_port)
        control = openssh._masters[server.pk].control
        os.kill(master_pid(control), signal.SIGKILL)
        await drain(first)  # the banner, if it came first, then the console sees its end
        await first.close()
        fresh = await openssh.open_console_stream(server, echo_port)
        try:
            assert openssh._masters[server.pk].control != control
            assert await banner(fresh) == b"SSH-"
        finally:
            await fresh.close()

    run(go)


def test_a_closed_port_is_refused(server, closed_port):
    with pytest.raises(ConnectionFailed, match="refused a tunnel"):
        open_banner(server, closed_port)


def test_a_deleted_servers_master_ends_from_another_thread(server, echo_port):
    """Server deletion runs in a job's thread; its consoles see their end."""

    async def go():
        stream = await openssh.open_console_stream(server, echo_port)
        control = openssh._masters[server.pk].control
        pid = master_pid(control)
        await asyncio.get_running_loop().run_in_executor(None, openssh.close_server, server.pk)
        while await asyncio.wait_for(stream.read(1 << 20), 10):
            pass
        await stream.close()
        return pid, control

    pid, control = run(go)
    assert server.pk not in openssh._masters
    wait_gone(pid, control)


CHILD = """
import sys, django
django.setup()
from ovmweb.inventory.models import Server
from ovmweb.tunnels import openssh
server = Server(pk=987654, name="child", hostname="127.0.0.1", ssh_port=int(sys.argv[1]), ssh_user="root",
                transport="ssh", host_key_fingerprint=sys.argv[2], host_key=sys.argv[3],
                credentials_encrypted=sys.argv[4])
master = openssh.master_for(server)
print(master.control, flush=True)
"""


def test_no_master_outlives_the_process_that_started_it(sshd):
    import subprocess
    import sys

    from django.conf import settings

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ovmweb.settings.test", "SECRET_KEY": settings.SECRET_KEY}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(sshd["port"]),
            sshd["fingerprint"],
            sshd["host_key"],
            encrypt_credentials({"private_key": sshd["private_key"]}),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=settings.BASE_DIR,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    control = done.stdout.strip().splitlines()[-1]
    assert control.endswith(".ctl")
    wait_gone(0, control)
    assert not Path(control).parent.exists()


def test_what_a_killed_process_left_behind_is_swept(monkeypatch, tmp_path):
    import subprocess
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp_path / f"{openssh.RUNTIME_PREFIX}{dead.pid}-abc"
    left.mkdir(mode=0o700)
    (left / "s1-1.key").write_text("a private key")
    living = tmp_path / f"{openssh.RUNTIME_PREFIX}{os.getppid()}-def"
    living.mkdir(mode=0o700)
    monkeypatch.setattr(openssh, "_runtime", None)
    made = Path(openssh._runtime_dir())
    assert not left.exists()
    assert living.exists()
    assert made.parent == tmp_path and made.name.startswith(f"{openssh.RUNTIME_PREFIX}{os.getpid()}-")


def test_a_temporary_directory_with_a_percent_sign_works(server, echo_port, monkeypatch):
    """ssh expands %-tokens in ControlPath, UserKnownHostsFile and IdentityFile: a literal % is %%."""
    import shutil
    import tempfile

    base = tempfile.mkdtemp(prefix="o%h-")
    try:
        monkeypatch.setattr(tempfile, "tempdir", base)
        monkeypatch.setattr(openssh, "_runtime", None)
        assert open_banner(server, echo_port) == (streams.MuxStream, b"SSH-")
        assert openssh._masters[server.pk].control.startswith(base)
    finally:
        openssh.close_server(server.pk)
        shutil.rmtree(base, ignore_errors=True)
