"""The real ``ovmweb`` command against a live runovmweb and the tiny guest on this
machine's libvirtd: sign-in, lists as JSON, names, ``vm start --wait``, the 409 and 400
messages and their exit codes, ``vm console --serial`` and ``jobs watch`` on the live feed."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import OVMWEB

pytestmark = pytest.mark.integration


def test_login_stored_the_token_for_this_user_only(cli_env, ovmweb_live):
    path = Path(cli_env["OVMWEB_CONFIG"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["url"] == ovmweb_live["url"] and stored["username"] == "admin" and len(stored["token"]) == 40


def test_lists_as_json_and_tables(ovmweb):
    result = ovmweb("vm", "list", "--json")
    assert result.returncode == 0, result.stderr
    (vm,) = json.loads(result.stdout)
    assert vm["name"] == "cli-tiny" and vm["status"] == "STOPPED"
    servers = ovmweb("servers", "list")
    assert servers.returncode == 0 and "local" in servers.stdout and "cli-pool" in servers.stdout
    shown = json.loads(ovmweb("repository", "show", "cli-repo", "--json").stdout)
    assert shown["kind"] == "LOCAL"


def test_unknown_name_is_exit_5_in_one_line(ovmweb):
    result = ovmweb("vm", "start", "no-such-vm")
    assert result.returncode == 5
    assert result.stderr.strip() == "ovmweb: VM no-such-vm: no VM named 'no-such-vm'"


def test_bad_input_names_the_field(ovmweb):
    result = ovmweb("vm", "edit", "cli-tiny", "--vcpus", "0")
    assert result.returncode == 7
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("ovmweb: vcpus: ")


def test_start_wait_409_serial_console_and_watch_the_kill(ovmweb, cli_env):
    started = ovmweb("vm", "start", "cli-tiny", "--wait", "--json", timeout=120)
    assert started.returncode == 0, started.stderr
    (job,) = json.loads(started.stdout)
    assert job["status"] == "SUCCESS" and job["operation"] == "vm.start"
    assert json.loads(ovmweb("vm", "show", "cli-tiny", "--json").stdout)["status"] == "RUNNING"

    again = ovmweb("vm", "start", "cli-tiny")
    assert again.returncode == 6
    (line,) = again.stderr.strip().splitlines()
    assert line.startswith("ovmweb: VM cli-tiny: ") and "RUNNING" in line

    # The serial console, through the browser's ticketed WebSocket: the guest's shell answers.
    answer, code = console_echo(cli_env)
    assert b"hello-42" in answer and code == 0, answer[-500:]

    # The live feed, through the same WebSocket the browser uses (token instead of a session).
    watch = subprocess.Popen(
        [str(OVMWEB), "jobs", "watch", "--json", "--count", "1"],
        env=cli_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2)  # connected and joined before the job is queued
        killed = ovmweb("vm", "kill", "cli-tiny", "--wait", timeout=120)
        assert killed.returncode == 0, killed.stderr
        out, err = watch.communicate(timeout=30)
    finally:
        watch.kill()
    assert watch.returncode == 0, err
    update = json.loads(out.splitlines()[0])
    assert update["operation"] == "vm.kill" and update["target_name"] == "cli-tiny"


def console_echo(cli_env, timeout: float = 45) -> tuple[bytes, int]:
    """Type a command into ``vm console cli-tiny --serial`` every 2 s (the guest may still be
    booting) until its answer comes back; then end the input. (output, exit code)."""
    proc = subprocess.Popen(
        [str(OVMWEB), "vm", "console", "cli-tiny", "--serial"],
        env=cli_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    seen, next_line, deadline = b"", 0.0, time.monotonic() + timeout
    try:
        while b"hello-42" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if time.monotonic() >= next_line:
                proc.stdin.write(b"echo hello-$((6*7))\n")
                proc.stdin.flush()
                next_line = time.monotonic() + 2
            if select.select([proc.stdout], [], [], 0.5)[0]:
                seen += os.read(proc.stdout.fileno(), 65536)
        proc.stdin.close()  # end of input: the command leaves
        return seen, proc.wait(timeout=20)
    finally:
        proc.kill()


def test_without_a_token_the_command_says_how_to_sign_in(ovmweb_live):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_")}
    env["OVMWEB_CONFIG"] = "/nonexistent/ovmweb.json"
    result = subprocess.run(
        [str(OVMWEB), "--url", ovmweb_live["url"], "--token", "0" * 40, "jobs", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 4
    assert "ovmweb login" in result.stderr
