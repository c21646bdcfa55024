"""The console pages in Debian's Chromium against the real stack: `manage.py
runovmweb` (daphne + embedded job worker + monitor) on a free loopback port with
a scratch SQLite database, `manage.py bootstrap`'s estate on this machine's
libvirtd, and the tiny guest really booted under QEMU. noVNC must draw the
guest's VGA screen and carry keystrokes to it; xterm.js must carry a command to
the guest's serial shell and show its answer."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from .conftest import ROOT, shot

pytestmark = [pytest.mark.browser, pytest.mark.integration, pytest.mark.timeout(900)]

TINY_ISO = ROOT / "var" / "guest" / "tiny.iso"
ADMIN_PASSWORD = "console-pw-123"
GUEST_HOSTNAME = "tinyguest"  # scripts/build-tiny-guest.sh writes it to /etc/hostname
BOOT_TIMEOUT = 240  # s: TCG on 2 shared cores; the guest can take 20+ s to reach its shell under load

# The pixels of noVNC's canvas, hashed, with how many of them are not black.
CANVAS_PROBE = """() => {
  const canvas = document.querySelector('#screen canvas');
  if (!canvas || !canvas.width || !canvas.height) return null;
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0, hash = 0;
  for (let i = 0; i < data.length; i += 4) {
    const v = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16);
    if (v !== 0) lit++;
    hash = (Math.imul(hash, 31) + v) | 0;
  }
  return { width: canvas.width, height: canvas.height, lit, hash };
}"""

# Keep a copy of the canvas' pixels in the page to compare later.
CANVAS_SNAPSHOT = """() => {
  const c = document.querySelector('#screen canvas');
  window.__canvasBefore = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
}"""

# Every line of xterm.js' buffer, trailing blanks trimmed.
TERMINAL_LINES = """() => {
  const b = window.ovmTerm.buffer.active, out = [];
  for (let i = 0; i < b.length; i++) out.push(b.getLine(i).translateToString(true));
  return out;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manage(env, *args, timeout=300):
    result = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


_CLEANUP = """
from ovmweb.hypervisor.libvirt import LibvirtDriver
from ovmweb.inventory.models import Repository, VirtualMachine
from ovmweb.inventory.services.repositories import pool_name
driver = LibvirtDriver("qemu:///system")
for vm in VirtualMachine.objects.all():
    driver.undefine(str(vm.uuid))
for repo in Repository.objects.all():
    for part in ("disks", "isos", ""):
        driver.pool_undefine(pool_name(repo, part))
driver.close()
"""


@pytest.fixture(scope="module")
def console_stack():
    """runovmweb on the bootstrap estate with the tiny guest started through the API and RUNNING."""
    if not TINY_ISO.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "build-tiny-guest.sh")], cwd=ROOT, check=True, timeout=1200)
    tmp = Path(tempfile.mkdtemp(prefix="ovmweb-consoles-"))
    (tmp / "guest").mkdir()
    (tmp / "guest" / "tiny.iso").symlink_to(TINY_ISO)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update({
        "DJANGO_SETTINGS_MODULE": "ovmweb.settings.base",
        "OVMWEB_VAR_DIR": str(tmp),
        "OVMWEB_SQLITE_PATH": str(tmp / "ovmweb.sqlite3"),
        "OVMWEB_LOCAL_REPOSITORY_PATH": str(tmp / "repositories" / "local"),
        "OVMWEB_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "OVMWEB_ADMIN_PASSWORD": ADMIN_PASSWORD,
        # Other tests on this host boot guests too: console ports of our own.
        "OVMWEB_VNC_PORT_BASE": str(_free_port()),
        "OVMWEB_SERIAL_PORT_BASE": str(_free_port()),
        "OVMWEB_RECONCILE_INTERVAL": "2",
        "OVMWEB_LOG_LEVEL": "INFO",
    })
    proc = log = None
    try:
        _manage(env, "migrate", "--noinput")
        _manage(env, "bootstrap")
        log = open(tmp / "server.log", "w")
        proc = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "runovmweb", "--bind", f"127.0.0.1:{port}"],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"runovmweb exited: {(tmp / 'server.log').read_text()[-3000:]}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "runovmweb did not start listening"
                time.sleep(0.3)

        api = requests.Session()
        api.get(f"{base}/login/", timeout=30).raise_for_status()
        r = api.post(f"{base}/login/", data={"username": "admin", "password": ADMIN_PASSWORD,
                                              "csrfmiddlewaretoken": api.cookies["csrftoken"]}, timeout=30)
        assert r.ok and "/login/" not in r.url, "API session login failed"
        vms = api.get(f"{base}/api/v1/vms/", params={"search": "tiny-guest"}, timeout=30).json()["results"]
        vm_id = next(v["id"] for v in vms if v["name"] == "tiny-guest")
        r = api.post(f"{base}/api/v1/vms/{vm_id}/start/", headers={"X-CSRFToken": api.cookies["csrftoken"]}, timeout=30)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + BOOT_TIMEOUT
        while (status := api.get(f"{base}/api/v1/vms/{vm_id}/", timeout=30).json()["status"]) != "RUNNING":
            assert status in ("STOPPED", "STARTING"), f"tiny-guest went {status}"
            assert time.monotonic() < deadline, f"tiny-guest still {status} after {BOOT_TIMEOUT} s"
            time.sleep(1)
        yield {"url": base, "vm_id": vm_id, "log": tmp / "server.log"}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if log is not None:
            log.close()
            (ROOT / "test-artifacts").mkdir(exist_ok=True)
            shutil.copy(tmp / "server.log", ROOT / "test-artifacts" / "consoles-server.log")
        subprocess.run([sys.executable, str(ROOT / "manage.py"), "shell", "-c", _CLEANUP], env=env, cwd=ROOT,
                       capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def _login(page, base: str, next_path: str) -> None:
    # Name what failed, not only that something did (the console message has no URL).
    page.on("response", lambda r: page.console_errors.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    page.goto(base + next_path)
    expect(page).to_have_url(re.compile(r"/login/\?next="))
    page.get_by_label("User name").fill("admin")
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(re.escape(next_path) + "$"))


def _expect_connected(page) -> None:
    try:
        expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected", timeout=30_000)
    except AssertionError as exc:
        raise AssertionError(f"console did not connect; browser errors: {page.console_errors}") from exc


def _terminal_lines(page) -> list[str]:
    return page.evaluate(TERMINAL_LINES)


def _run_in_serial(page, command: str, answer: re.Pattern, timeout: float) -> list[str]:
    """Type ``command`` + Enter until a line of the terminal matches ``answer`` (the guest may still be booting)."""
    deadline = time.monotonic() + timeout
    while True:
        page.keyboard.type(command)
        page.keyboard.press("Enter")
        for _ in range(20):
            lines = _terminal_lines(page)
            if any(answer.fullmatch(line.strip()) for line in lines):
                return lines
            page.wait_for_timeout(500)
        assert time.monotonic() < deadline, f"no answer to {command!r} on the serial console:\n" + "\n".join(l for l in lines if l)


def _open_serial(page, base: str, vm_id: int) -> None:
    page.goto(f"{base}/vms/{vm_id}/serial-console/")
    _expect_connected(page)
    expect(page.locator("#vm-state")).to_have_text("RUNNING")
    page.locator("#screen .xterm").click()


def test_serial_console_runs_a_command(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    _login(page, base, f"/vms/{vm_id}/serial-console/")
    _expect_connected(page)
    expect(page.locator("#vm-name")).to_have_text("tiny-guest")
    expect(page.locator("#readonly-banner")).to_be_hidden()
    page.locator("#screen .xterm").click()
    # The line that is exactly the host name is uname's answer (the prompt is "tinyguest:~# ...").
    lines = _run_in_serial(page, "uname -n", re.compile(GUEST_HOSTNAME), BOOT_TIMEOUT)
    assert any(line.startswith(f"{GUEST_HOSTNAME}:") and "uname -n" in line for line in lines), lines[-10:]
    shot(page, "consoles-serial")
    assert page.console_errors == []


def test_vnc_console_draws_the_screen_and_takes_keystrokes(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    _login(page, base, f"/vms/{vm_id}/console/")
    _expect_connected(page)
    expect(page.locator("#vm-state")).to_have_text("RUNNING")
    # The guest's VGA text console: a drawn framebuffer, not a black (or absent) canvas.
    page.wait_for_function(f"() => {{ const p = ({CANVAS_PROBE})(); return p && p.lit > 500; }}", timeout=BOOT_TIMEOUT * 1000)
    before = page.evaluate(CANVAS_PROBE)
    assert before["width"] >= 640 and before["height"] >= 400, before
    shot(page, "consoles-vnc-before")
    page.evaluate(CANVAS_SNAPSHOT)

    page.locator("#screen canvas").click()
    # Characters typed without Shift: Playwright's keyboard.type sends ">" as the bare Period key code, and
    # noVNC forwards key codes (QEMU's extended key events), so the guest would read ".".
    page.keyboard.type("touch /tmp/hello-vnc; echo hello-vnc")
    page.keyboard.press("Enter")
    # The typed line and its echo: far more changed pixels than a blinking cursor.
    page.wait_for_function(
        """() => {
          const before = window.__canvasBefore, c = document.querySelector('#screen canvas');
          const now = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
          let changed = 0;
          for (let i = 0; i < now.length; i += 4) if (now[i] !== before[i] || now[i+1] !== before[i+1]) changed++;
          return changed > 500;  // a blinking cursor is 9x2 pixels; a typed character about 30
        }""",
        timeout=30_000,
    )
    assert page.evaluate(CANVAS_PROBE)["hash"] != before["hash"]

    # The keystrokes reached the guest itself: the file made from the VGA shell is there for the
    # serial shell (a second console of the same VM, open beside the first).
    serial = page.context.new_page()
    serial.console_errors = []
    serial.on("pageerror", lambda exc: serial.console_errors.append(f"pageerror: {exc}"))
    serial.on("console", lambda m: serial.console_errors.append(m.text) if m.type == "error" else None)
    _open_serial(serial, base, vm_id)
    _run_in_serial(serial, "ls /tmp/hello-vnc", re.compile("/tmp/hello-vnc"), 60)
    assert serial.console_errors == []
    serial.close()
    shot(page, "consoles-vnc-after")  # by now the echo of the typed line is drawn too
    expect(page.locator("#conn-status")).to_have_attribute("data-state", "connected")
    assert page.console_errors == []
