"""A live ovmweb for the command line: `manage.py runovmweb` on a free port with its own
scratch database and var directory (as tests/browser does), an estate made before it
starts (this machine's libvirtd as server ``local``, a repository, the tiny guest's ISO
and a stopped VM ``cli-tiny`` booting from it), and the real ``ovmweb`` command of the venv."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OVMWEB = Path(sys.executable).with_name("ovmweb")
PASSWORD = "cli-pw-12345"

SETUP = """
from pathlib import Path
from django.contrib.auth import get_user_model
from ovmweb.inventory.models import IsoFile, Repository, Server
from ovmweb.inventory.services import pools, repositories, servers, storage, vms
from ovmweb.jobs.testing import run_pending_jobs

tmp = Path({tmp!r})
user = get_user_model().objects.create_superuser("admin", "admin@example.com", {password!r})
pool = pools.server_pool_create(user=user, name="cli-pool")
servers.server_discover(user=user, hostname="localhost", transport="local", name="local", server_pool=pool)
run_pending_jobs()
server = Server.objects.get(name="local")
assert server.status == "RUNNING", server.status_message
(tmp / "repo").mkdir()
repositories.repository_create(
    user=user, name="cli-repo", kind="LOCAL", path=str(tmp / "repo"), server=server, server_pools=[pool]
)
run_pending_jobs()
repo = Repository.objects.get(name="cli-repo")
with open({iso!r}, "rb") as fh:
    storage.iso_upload(repository=repo, user=user, name="tiny.iso", fileobj=fh, size=Path({iso!r}).stat().st_size)
run_pending_jobs()
iso = IsoFile.objects.get(name="tiny.iso")
vms.vm_create(
    user=user, name="cli-tiny", server_pool=pool, repository=repo, domain_type="HVM", os_type="OTHER_LINUX",
    memory_mib=256, max_memory_mib=256, source={{"kind": "iso", "iso": iso}}, boot_order=["cdrom", "disk"],
)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manage(env, *args, timeout=180):
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _virsh(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=60)


def _cleanup(env, tmp: Path) -> None:
    """This libvirtd is shared: take away our domains and the storage pools under our directory."""
    code = "from ovmweb.inventory.models import VirtualMachine as V; print(*V.objects.values_list('uuid', flat=True))"
    for uuid in _manage(env, "shell", "-c", code).stdout.split():
        _virsh("destroy", uuid)
        _virsh("undefine", uuid, "--nvram")
    for name in _virsh("pool-list", "--all", "--name").stdout.split():
        if str(tmp) in _virsh("pool-dumpxml", name).stdout:
            _virsh("pool-destroy", name)
            _virsh("pool-undefine", name)


def _wait_listening(proc, port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runovmweb exited: {log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("runovmweb did not start listening")


@pytest.fixture(scope="session")
def ovmweb_live():
    tmp = Path(tempfile.mkdtemp(prefix="ovmweb-cli-"))
    port = _free_port()
    base = random.randrange(20000, 40000, 1000)  # console ports of our own on this shared libvirtd
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="ovmweb.settings.base",
        OVMWEB_VAR_DIR=str(tmp),
        OVMWEB_LOCAL_REPOSITORY_PATH=str(tmp / "repositories" / "local"),
        OVMWEB_ALLOWED_HOSTS="127.0.0.1,localhost",
        OVMWEB_RECONCILE_INTERVAL="2",
        OVMWEB_LOG_LEVEL="INFO",
        OVMWEB_SERIAL_PORT_BASE=str(base),
        OVMWEB_VNC_PORT_BASE=str(base + 500),
    )
    _manage(env, "migrate", "--noinput")
    log_path = tmp / "server.log"
    log = open(log_path, "w")
    proc = None
    try:
        _manage(
            env,
            "shell",
            "-c",
            SETUP.format(tmp=str(tmp), iso=str(ROOT / "var" / "guest" / "tiny.iso"), password=PASSWORD),
        )
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runovmweb", "--bind", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _wait_listening(proc, port, log_path)
        yield {"url": f"http://127.0.0.1:{port}", "tmp": tmp, "log": log_path}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
        _cleanup(env, tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def cli_env(ovmweb_live, tmp_path_factory):
    """The environment of an ``ovmweb`` run: no server variables but a config file of its own,
    filled by ``ovmweb login`` (so every test after the first uses the stored token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_")}
    env["OVMWEB_CONFIG"] = str(tmp_path_factory.mktemp("cli") / "ovmweb" / "config.json")
    env["COLUMNS"] = "160"
    result = subprocess.run(
        [str(OVMWEB), "login", ovmweb_live["url"], "--username", "admin", "--password-stdin"],
        input=PASSWORD + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return env


@pytest.fixture
def ovmweb(cli_env):
    """Run the real command: ovmweb(*args) -> CompletedProcess (text)."""

    def run(*args, input=None, timeout=60):
        return subprocess.run(
            [str(OVMWEB), *args], env=cli_env, capture_output=True, text=True, input=input, timeout=timeout
        )

    return run
