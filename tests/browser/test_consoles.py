"""The console pages in Debian's Chromium against the real stack: `manage.py
runovmweb` (daphne + embedded job worker + monitor) on a free loopback port with
a scratch SQLite database, `manage.py bootstrap`'s estate on this machine's
libvirtd, and the tiny guest really booted under QEMU. noVNC must draw the
guest's VGA screen and carry keystrokes to it; xterm.js must carry a command to
the guest's serial shell and show its answer.

Then the pages' controls, each checked where it takes effect: text pasted into
the paste box (and the clipboard, for xterm.js) runs as a command in the guest;
Ctrl-Alt-Del and the key-combination select send the RFB key messages read back
from the WebSocket frames, and the guest switches its virtual terminal or powers
off; a connection reset under an open console (browser side or QEMU side) is
followed by a reconnection with a fresh ticket, but the user's Disconnect is
not; scaling and fullscreen resize the canvas; the VM's name and state are shown
and the state follows the live-update feed. The guest is booted once for the
module; the Ctrl-Alt-Del test powers it off, so it runs last."""

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
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
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
    env.update(
        {
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
        }
    )
    proc = log = None
    try:
        _manage(env, "migrate", "--noinput")
        _manage(env, "bootstrap")
        log = open(tmp / "server.log", "w")
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "runovmweb", "--bind", f"127.0.0.1:{port}"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
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
        r = api.post(
            f"{base}/login/",
            data={"username": "admin", "password": ADMIN_PASSWORD, "csrfmiddlewaretoken": api.cookies["csrftoken"]},
            timeout=30,
        )
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
        yield {"url": base, "port": port, "vm_id": vm_id, "log": tmp / "server.log", "api": api}
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
        subprocess.run(
            [sys.executable, str(ROOT / "manage.py"), "shell", "-c", _CLEANUP],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
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
        assert time.monotonic() < deadline, f"no answer to {command!r} on the serial console:\n" + "\n".join(
            ln for ln in lines if ln
        )


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
    page.wait_for_function(
        f"() => {{ const p = ({CANVAS_PROBE})(); return p && p.lit > 500; }}", timeout=BOOT_TIMEOUT * 1000
    )
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


# --- the console pages' controls -----------------------------------------------

CONTROL_L, ALT_L, SHIFT_L, DELETE, F1 = 0xFFE3, 0xFFE9, 0xFFE1, 0xFFFF, 0xFFBE

# Every text #conn-status has shown since the page loaded (a state may last less than expect's polling interval).
STATUS_LOG = """() => {
  const el = document.getElementById('conn-status');
  window.__statusLog = [el.textContent];
  new MutationObserver(() => window.__statusLog.push(el.textContent)).observe(el, { childList: true, characterData: true, subtree: true });
}"""

# Whether noVNC's canvas, as displayed, fits #screen: as large as it can be with its aspect ratio kept.
CANVAS_FITS = """() => {
  const c = document.querySelector('#screen canvas').getBoundingClientRect();
  const s = document.getElementById('screen').getBoundingClientRect();
  const near = (a, b) => Math.abs(a - b) <= 1.5;
  return (near(c.width, s.width) && c.height <= s.height + 1.5) || (near(c.height, s.height) && c.width <= s.width + 1.5);
}"""


class RfbInput:
    """The RFB client messages the page really sends: the binary WebSocket frames Chromium records."""

    def __init__(self, page):
        self.frames: list[bytes] = []
        self.urls: list[str] = []
        page.on("websocket", self._socket)

    def _socket(self, ws) -> None:
        if "/ws/console/vnc/" not in ws.url:
            return
        self.urls.append(ws.url)
        ws.on(
            "framesent", lambda payload: self.frames.append(payload if isinstance(payload, bytes) else payload.encode())
        )

    def mark(self) -> int:
        return len(self.frames)

    def key_events(self, since: int, *, scancodes: bool = False) -> list[tuple[int, ...]]:
        """(message type, down flag, keysym) of each KeyEvent (type 4: u8 type, u8 down, u16 padding,
        u32 keysym) and QEMU extended key event (type 255 subtype 0: u8, u8, u16 down, u32 keysym,
        u32 XT scancode, plus that scancode if asked for) sent after frame number ``since``; other
        messages are stepped over."""
        sizes = {0: 20, 3: 10, 5: 6}  # SetPixelFormat, FramebufferUpdateRequest, PointerEvent
        events = []
        for frame in self.frames[since:]:
            i = 0
            while i < len(frame):
                kind = frame[i]
                if kind == 4 and len(frame) - i >= 8:
                    events.append(
                        (4, frame[i + 1], int.from_bytes(frame[i + 4 : i + 8], "big")) + ((None,) if scancodes else ())
                    )
                    i += 8
                elif kind == 255 and len(frame) - i >= 12 and frame[i + 1] == 0:
                    events.append(
                        (255, int.from_bytes(frame[i + 2 : i + 4], "big"), int.from_bytes(frame[i + 4 : i + 8], "big"))
                        + ((int.from_bytes(frame[i + 8 : i + 12], "big"),) if scancodes else ())
                    )
                    i += 12
                elif kind in sizes:
                    i += sizes[kind]
                else:
                    break  # a message we do not parse: the rest of this frame is not key input
        return events

    def wait_keys(self, page, since: int, count: int) -> list[tuple[int, int, int]]:
        for _ in range(100):
            events = self.key_events(since)
            if len(events) >= count:
                return events
            page.wait_for_timeout(100)  # lets Playwright deliver the recorded frames
        raise AssertionError(f"expected {count} key events, the page sent {self.key_events(since)}")


def _ticket_posts(page) -> list[str]:
    posts: list[str] = []
    page.on(
        "request", lambda r: posts.append(r.url) if r.method == "POST" and r.url.endswith("/console-tickets/") else None
    )
    return posts


def _wait_drawn(page) -> None:
    page.wait_for_function(f"() => {{ const p = ({CANVAS_PROBE})(); return p && p.lit > 500; }}", timeout=60_000)


def _open_vnc(page, base: str, vm_id: int) -> None:
    _login(page, base, f"/vms/{vm_id}/console/")
    _expect_connected(page)
    _wait_drawn(page)


def _serial_beside(page, base: str, vm_id: int):
    """A serial console of the same VM in a second tab: the guest's own word on what the VNC page did."""
    serial = page.context.new_page()
    serial.console_errors = []
    serial.on("pageerror", lambda exc: serial.console_errors.append(f"pageerror: {exc}"))
    serial.on("console", lambda m: serial.console_errors.append(m.text) if m.type == "error" else None)
    _open_serial(serial, base, vm_id)
    return serial


def _wait_terminal_line(page, answer: re.Pattern, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        lines = _terminal_lines(page)
        if any(answer.fullmatch(line.strip()) for line in lines):
            return
        assert time.monotonic() < deadline, f"no line {answer.pattern!r} on the serial console:\n" + "\n".join(
            ln for ln in lines if ln
        )
        page.wait_for_timeout(300)


def _cut_tcp(port: int) -> None:
    """Abort every TCP connection to ``port`` on this machine, as a failing network would: the kernel
    resets them (ss -K, SOCK_DESTROY); neither end chose to close."""
    result = subprocess.run(["ss", "-K", "-t", "dport", "=", f":{port}"], capture_output=True, text=True, timeout=30)
    # Needs CAP_NET_ADMIN and a kernel with CONFIG_INET_DIAG_DESTROY; ss names the refusal on stderr.
    assert result.returncode == 0 and "ESTAB" in result.stdout, (
        f"no connection to port {port} was cut:\n{result.stdout}\n{result.stderr}"
    )


def _vm_action(console_stack, action: str) -> None:
    api, base, vm_id = console_stack["api"], console_stack["url"], console_stack["vm_id"]
    r = api.post(f"{base}/api/v1/vms/{vm_id}/{action}/", headers={"X-CSRFToken": api.cookies["csrftoken"]}, timeout=30)
    assert r.status_code == 202, r.text


def test_vnc_paste_is_typed_into_the_guest(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    rfb = RfbInput(page)
    _open_vnc(page, base, vm_id)
    serial = _serial_beside(page, base, vm_id)
    _run_in_serial(serial, "echo up-$((1+1))", re.compile("up-2"), BOOT_TIMEOUT)  # tty1's shell is up too
    # Capitals, '"', '>' and '$()' need Shift on the guest's keyboard; a newline is Return.
    text = 'echo "Pasted OK:" $((6*7)) > /tmp/pasted-vnc\n'
    page.locator("details.paste summary").click()
    page.locator("#paste-text").fill(text)
    mark = rfb.mark()
    page.get_by_role("button", name="Type it").click()
    events = rfb.wait_keys(page, mark, 2 * len(text))
    # Each character goes down then up; 'P' inside Shift.
    assert (4, 1, ord("e")) == events[0] and (4, 0, ord("e")) == events[1], events[:4]
    p = events.index((4, 1, ord("P")))
    assert events[p - 1] == (4, 1, SHIFT_L) and events[p + 2] == (4, 0, SHIFT_L), events[p - 2 : p + 4]
    assert events[-2:] == [(4, 1, 0xFF0D), (4, 0, 0xFF0D)], events[-4:]

    # The guest takes the keys at its own pace: let it wait for the file rather than ask again and again.
    _run_in_serial(
        serial,
        "until [ -s /tmp/pasted-vnc ]; do sleep 0.2; done; cat /tmp/pasted-vnc",
        re.compile(r"Pasted OK: 42"),
        60,
    )
    assert serial.console_errors == []
    serial.close()
    assert page.console_errors == []


def test_serial_paste_box_and_clipboard_reach_the_guest(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    _login(page, base, f"/vms/{vm_id}/serial-console/")
    _expect_connected(page)
    page.locator("#screen .xterm").click()
    _run_in_serial(page, "echo ready-$((2+3))", re.compile("ready-5"), BOOT_TIMEOUT)

    # The page's paste box.
    page.locator("details.paste summary").click()
    page.locator("#paste-text").fill("echo box-$((6*7))-pasted\n")
    page.get_by_role("button", name="Type it").click()
    _wait_terminal_line(page, re.compile("box-42-pasted"), 30)

    # A clipboard paste into the terminal itself (xterm.js: Ctrl+Shift+V, through its paste handler).
    page.evaluate("navigator.clipboard.writeText('echo clip-$((3*3))-board\\n')")
    page.locator("#screen .xterm").click()
    page.keyboard.press("Control+Shift+V")
    _wait_terminal_line(page, re.compile("clip-9-board"), 30)

    # Text an input method would insert (no key events): xterm's input handler, then onData.
    page.keyboard.insert_text("echo ime-$((5*5))-text")
    page.keyboard.press("Enter")
    _wait_terminal_line(page, re.compile("ime-25-text"), 30)
    assert page.console_errors == []


def test_serial_control_key_interrupts_the_guest_command(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    sent: list[bytes] = []
    page.on(
        "websocket",
        lambda ws: (
            ws.on("framesent", lambda p: sent.append(p if isinstance(p, bytes) else p.encode()))
            if "/ws/console/serial/" in ws.url
            else None
        ),
    )
    _login(page, base, f"/vms/{vm_id}/serial-console/")
    _expect_connected(page)
    page.locator("#screen .xterm").click()
    _run_in_serial(page, "echo ready-$((2+3))", re.compile("ready-5"), BOOT_TIMEOUT)
    page.keyboard.type("sleep 40 && echo slept-$((20+20))")
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)  # the shell has started sleep
    page.locator("#send-keys").select_option(label="Ctrl-C")
    expect(page.locator("#send-keys")).to_have_value("")
    # The interrupted sleep ends the && chain: the shell answers the next command, and never says "slept-40".
    _run_in_serial(page, "echo after-$((6+6))", re.compile("after-12"), 60)
    assert b"\x03" in sent, sent[-5:]
    assert not any(line.strip() == "slept-40" for line in _terminal_lines(page))
    assert page.console_errors == []


def test_serial_reconnects_after_a_drop(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    posts = _ticket_posts(page)
    _login(page, base, f"/vms/{vm_id}/serial-console/")
    _expect_connected(page)
    page.locator("#screen .xterm").click()
    _run_in_serial(page, "echo ready-$((2+3))", re.compile("ready-5"), BOOT_TIMEOUT)
    page.evaluate(STATUS_LOG)
    # ovmweb's connection to QEMU's serial port is reset under the open console.
    serial_port = console_stack["api"].get(f"{base}/api/v1/vms/{vm_id}/", timeout=30).json()["serial_port"]
    _cut_tcp(serial_port)
    page.wait_for_function("() => window.__statusLog.some(t => /reconnecting/.test(t))", timeout=30_000)
    _expect_connected(page)
    assert len(posts) == 2, posts
    _run_in_serial(page, "echo again-$((4+4))", re.compile("again-8"), 30)  # the new session carries keys
    assert page.console_errors == []


def test_vnc_scales_to_the_window_and_goes_fullscreen(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    _open_vnc(page, base, vm_id)
    fb = page.evaluate("() => { const c = document.querySelector('#screen canvas'); return [c.width, c.height]; }")
    canvas = page.locator("#screen canvas")
    expect(page.locator("#scale")).to_be_checked()
    page.wait_for_function(CANVAS_FITS, timeout=10_000)
    big = canvas.bounding_box()
    assert big["width"] > fb[0], (big, fb)  # 1440x900 window: scaled up past the guest's framebuffer

    page.set_viewport_size({"width": 560, "height": 420})
    page.wait_for_function(CANVAS_FITS, timeout=10_000)
    small = canvas.bounding_box()
    assert small["width"] < fb[0] and abs(small["width"] / small["height"] - fb[0] / fb[1]) < 0.02, (small, fb)

    page.locator("#scale").uncheck()
    page.wait_for_function(
        f"() => {{ const r = document.querySelector('#screen canvas').getBoundingClientRect();"
        f" return Math.abs(r.width - {fb[0]}) < 1 && Math.abs(r.height - {fb[1]}) < 1; }}",
        timeout=10_000,
    )
    page.locator("#scale").check()
    page.wait_for_function(CANVAS_FITS, timeout=10_000)
    assert canvas.bounding_box()["width"] < fb[0]

    page.get_by_role("button", name="Fullscreen").click()
    page.wait_for_function(
        "() => document.fullscreenElement && document.fullscreenElement.id === 'screen'", timeout=10_000
    )
    page.wait_for_function(CANVAS_FITS, timeout=10_000)  # the whole screen is the console's now
    shot(page, "consoles-vnc-fullscreen")
    page.evaluate("() => document.exitFullscreen()")
    page.wait_for_function("() => document.fullscreenElement === null", timeout=10_000)
    _expect_connected(page)
    assert page.console_errors == []


def test_vnc_key_combination_reaches_the_guest(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    rfb = RfbInput(page)
    _open_vnc(page, base, vm_id)
    serial = _serial_beside(page, base, vm_id)
    # Open /dev/tty2 so that the kernel has a virtual terminal 2 to switch to.
    _run_in_serial(
        serial, "echo > /dev/tty2; echo before-$(cat /sys/class/tty/tty0/active)", re.compile("before-tty1"), 60
    )

    mark = rfb.mark()
    page.locator("#send-keys").select_option(label="Ctrl-Alt-F2")
    events = rfb.wait_keys(page, mark, 6)
    assert events == [
        (4, 1, CONTROL_L),
        (4, 1, ALT_L),
        (4, 1, F1 + 1),
        (4, 0, F1 + 1),
        (4, 0, ALT_L),
        (4, 0, CONTROL_L),
    ]
    expect(page.locator("#send-keys")).to_have_value("")  # ready for the next combination
    # The guest's kernel switched its console to VT 2.
    _run_in_serial(serial, "echo after-$(cat /sys/class/tty/tty0/active)", re.compile("after-tty2"), 30)

    mark = rfb.mark()
    page.locator("#send-keys").select_option(label="Ctrl-Alt-F1")
    assert [e[2] for e in rfb.wait_keys(page, mark, 6)] == [CONTROL_L, ALT_L, F1, F1, ALT_L, CONTROL_L]
    _run_in_serial(serial, "echo back-$(cat /sys/class/tty/tty0/active)", re.compile("back-tty1"), 30)
    assert serial.console_errors == []
    serial.close()
    assert page.console_errors == []


def test_vnc_reconnects_after_a_drop_but_not_after_disconnect(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    rfb = RfbInput(page)
    posts = _ticket_posts(page)
    _open_vnc(page, base, vm_id)
    page.evaluate(STATUS_LOG)
    page.evaluate("() => { window.__canvasBeforeDrop = document.querySelector('#screen canvas'); }")
    assert len(posts) == 1
    status = page.locator("#conn-status")

    def expect_reconnected(n: int) -> None:
        page.wait_for_function("() => window.__statusLog.some(t => /reconnecting/.test(t))", timeout=30_000)
        _expect_connected(page)
        log = page.evaluate("window.__statusLog")
        drop = max(i for i, t in enumerate(log) if "reconnecting" in t)
        assert "Connected" in log[drop:], log
        assert len(posts) == n, posts  # a fresh ticket for the new connection...
        assert len(set(rfb.urls)) == n, rfb.urls  # ...in the WebSocket URL of a new socket
        # The new session has a canvas of its own, and draws the guest's screen on it.
        assert page.evaluate("() => document.querySelector('#screen canvas') !== window.__canvasBeforeDrop")
        _wait_drawn(page)
        page.evaluate(STATUS_LOG)
        page.evaluate("() => { window.__canvasBeforeDrop = document.querySelector('#screen canvas'); }")

    # The browser's connections to ovmweb are reset (the WebSocket closes with 1006, not cleanly).
    _cut_tcp(console_stack["port"])
    expect_reconnected(2)

    # ovmweb's connection to QEMU's VNC port is reset: ovmweb closes the WebSocket.
    vnc_port = console_stack["api"].get(f"{base}/api/v1/vms/{vm_id}/", timeout=30).json()["vnc_port"]
    _cut_tcp(vnc_port)
    expect_reconnected(3)

    # The user's own Disconnect stays disconnected.
    page.get_by_role("button", name="Disconnect").click()
    expect(status).to_have_text("Disconnected")
    expect(status).to_have_attribute("data-state", "closed")
    page.wait_for_timeout(4000)  # longer than the first two reconnect delays (1 s, 2 s)
    expect(status).to_have_text("Disconnected")
    assert len(posts) == 3, posts
    expect(page.get_by_role("button", name="Reconnect")).to_be_visible()

    page.get_by_role("button", name="Reconnect").click()
    _expect_connected(page)
    assert len(posts) == 4

    # Disconnect while the page waits to reconnect (1 s after a drop) ends the retrying too.
    page.evaluate(STATUS_LOG)
    _cut_tcp(console_stack["port"])
    page.wait_for_function("() => window.__statusLog.some(t => /reconnecting/.test(t))", timeout=30_000)
    page.get_by_role("button", name="Disconnect").click()
    expect(status).to_have_text("Disconnected")
    page.wait_for_timeout(3000)
    expect(status).to_have_text("Disconnected")
    assert len(posts) == 4, posts
    # A dropped connection is never reported as an error on the page, only as a state.
    assert page.console_errors == []


# Switch off the console page's 10 s poll of the VM (and count that it was asked for): whatever
# then changes the state on the page came through the live-update WebSocket.
NO_POLL = """(() => {
  const setInterval = window.setInterval;
  window.__pollsBlocked = 0;
  window.setInterval = function (fn, ms, ...args) {
    if (ms === 10000) { window.__pollsBlocked++; return 0; }
    return setInterval.call(this, fn, ms, ...args);
  };
})();"""


def test_console_page_shows_the_vm_and_follows_its_state(console_stack, page):
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    page.add_init_script(NO_POLL)
    _open_vnc(page, base, vm_id)
    assert page.evaluate("window.__pollsBlocked") == 1
    expect(page.locator("#vm-name")).to_have_text("tiny-guest")
    expect(page).to_have_title("tiny-guest · Console")
    state = page.locator("#vm-state")
    expect(state).to_have_text("RUNNING")
    expect(state).to_have_attribute("data-status", "RUNNING")
    # Its server, and the session's time left once connected.
    expect(page.locator("#vm-server")).not_to_have_text("")
    expect(page.locator("#session-left")).to_contain_text("Time left")

    _vm_action(console_stack, "suspend")
    expect(state).to_have_text("SUSPENDED", timeout=60_000)
    # A paused guest keeps its console: QEMU still serves the (frozen) screen.
    _expect_connected(page)
    _vm_action(console_stack, "resume")
    expect(state).to_have_text("RUNNING", timeout=60_000)
    _expect_connected(page)
    assert page.console_errors == []


def test_ctrl_alt_del_reaches_the_guest_which_powers_off(console_stack, page):
    """Last in the module: the tiny guest's busybox init answers Ctrl-Alt-Del with
    ``::ctrlaltdel:/sbin/poweroff -f`` (scripts/build-tiny-guest.sh), so the VM stops."""
    base, vm_id = console_stack["url"], console_stack["vm_id"]
    rfb = RfbInput(page)
    posts = _ticket_posts(page)
    _open_vnc(page, base, vm_id)
    # Before init is up, the kernel would reboot on Ctrl-Alt-Del itself: wait for the guest's shell.
    serial = _serial_beside(page, base, vm_id)
    _run_in_serial(serial, "echo up-$((1+1))", re.compile("up-2"), BOOT_TIMEOUT)
    serial.close()
    mark = rfb.mark()
    page.get_by_role("button", name="Ctrl-Alt-Del").click()
    rfb.wait_keys(page, mark, 6)
    # QEMU offers the QEMU Extended Key Event pseudo-encoding, so noVNC sends each key as message
    # type 255 (keysym plus XT scancode: Delete is the extended 0xe0 0x53, carried as 0xd3), not 4.
    assert rfb.key_events(mark, scancodes=True) == [
        (255, 1, CONTROL_L, 0x1D),
        (255, 1, ALT_L, 0x38),
        (255, 1, DELETE, 0xD3),
        (255, 0, DELETE, 0xD3),
        (255, 0, ALT_L, 0x38),
        (255, 0, CONTROL_L, 0x1D),
    ]

    status = page.locator("#conn-status")
    expect(status).to_have_text("The virtual machine is not running.", timeout=120_000)
    expect(page.locator("#vm-state")).to_have_text("STOPPED", timeout=30_000)
    api = console_stack["api"]
    assert api.get(f"{base}/api/v1/vms/{vm_id}/", timeout=30).json()["status"] == "STOPPED"
    tried = len(posts)
    page.wait_for_timeout(3000)  # no reconnecting to a stopped VM
    assert len(posts) == tried
    expect(status).to_have_text("The virtual machine is not running.")
    expect(page.get_by_role("button", name="Reconnect")).to_be_visible()
