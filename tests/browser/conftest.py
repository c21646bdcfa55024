"""A real ovmweb for the browser: `manage.py runovmweb` (daphne + embedded job
worker + monitor) on a free port, with its own temporary SQLite database and
var directory, against this machine's real libvirtd; and Debian's Chromium."""

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
ARTIFACTS = ROOT / "test-artifacts"
ADMIN_PASSWORD = "browser-pw-123"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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


@pytest.fixture(scope="module")
def ovmweb_server():
    tmp = Path(tempfile.mkdtemp(prefix="ovmweb-browser-"))
    port = _free_port()
    # Other ovmweb instances (other test runs) may share this libvirtd: console
    # ports of our VMs come from a range of our own.
    serial_base = random.randrange(20000, 40000, 1000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "ovmweb.settings.base",
            "OVMWEB_VAR_DIR": str(tmp),
            "OVMWEB_LOCAL_REPOSITORY_PATH": str(tmp / "repositories" / "local"),
            "OVMWEB_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "OVMWEB_RECONCILE_INTERVAL": "2",
            "OVMWEB_LOG_LEVEL": "INFO",
            "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
            "OVMWEB_SERIAL_PORT_BASE": str(serial_base),
            "OVMWEB_VNC_PORT_BASE": str(serial_base + 500),
        }
    )
    _manage(env, "migrate", "--noinput")
    _manage(env, "createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "manage.py"), "runovmweb", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runovmweb exited: {(tmp / 'server.log').read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.3)
    else:
        proc.kill()
        raise RuntimeError("runovmweb did not start listening")
    yield {"url": f"http://127.0.0.1:{port}", "tmp": tmp, "env": env, "log": tmp / "server.log", "proc": proc}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    _remove_libvirt_leftovers(env, tmp)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(tmp / "server.log", ARTIFACTS / "browser-server.log")
    shutil.rmtree(tmp, ignore_errors=True)


def _virsh(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True, timeout=60)


def _remove_libvirt_leftovers(env, tmp: Path) -> None:
    """This libvirtd is shared: take away the domains of our VMs (a failed run may
    leave one running, holding its console ports) and the storage pools under our
    scratch directory."""
    out = _manage(
        env,
        "shell",
        "-c",
        "from ovmweb.inventory.models import VirtualMachine as V; print(*V.objects.values_list('uuid', flat=True))",
    )
    for uuid in out.stdout.split():
        _virsh("destroy", uuid)
        _virsh("undefine", uuid, "--nvram")
    for name in _virsh("pool-list", "--all", "--name").stdout.split():
        if str(tmp) in _virsh("pool-dumpxml", name).stdout:
            _virsh("pool-destroy", name)
            _virsh("pool-undefine", name)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("console", lambda msg: errors.append(f"console.{msg.type}: {msg.text}") if msg.type == "error" else None)
    pg.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    pg.console_errors = errors
    yield pg
    context.close()


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=False)
