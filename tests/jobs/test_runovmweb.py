"""`manage.py runovmweb` serves HTTP and runs the embedded worker in one process."""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _manage(env, *args, timeout=120):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def _ctrl_c_enabled() -> None:
    """In the child before exec: a shell that starts a background job (``ci/run &``) makes
    SIGINT ignored for it and everything below, and an ignored signal stays ignored across
    exec, so Twisted would not install its Ctrl-C handler. The test is of Ctrl-C at a terminal."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_runovmweb_serves_pages_and_runs_queued_jobs(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    # A fresh embedded deployment: its own SQLite database, in-memory layer, embedded worker.
    env.update(DJANGO_SETTINGS_MODULE="ovmweb.settings.base", OVMWEB_VAR_DIR=str(tmp_path))
    assert _manage(env, "migrate", "--noinput").returncode == 0
    # Queued while no server runs: the embedded worker must pick it up at start.
    submitted = _manage(
        env,
        "shell",
        "-c",
        "from django.db import transaction\n"
        "from ovmweb.jobs.services import job_submit\n"
        "with transaction.atomic():\n"
        "    job = job_submit(operation='no.such.operation', summary='queued before start')\n"
        "print(job.pk)",
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip().splitlines()[-1])

    port = _free_port()
    log = open(tmp_path / "server.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runovmweb", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=_ctrl_c_enabled,
    )
    try:
        body = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as resp:
                    assert resp.status == 200
                    body = resp.read().decode()
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, (tmp_path / "server.log").read_text()
                time.sleep(0.3)
        assert body is not None, (tmp_path / "server.log").read_text()
        assert 'name="username"' in body and 'name="password"' in body

        status = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = _manage(
                env, "shell", "-c", f"from ovmweb.jobs.models import Job; print(Job.objects.get(pk={job_id}).status)"
            )
            status = out.stdout.strip().splitlines()[-1]
            if status == "FAILURE":
                break
            time.sleep(0.3)
        # The unknown operation proves the job went through the runner inside the server process.
        assert status == "FAILURE"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert "embedded job worker started" in text
    # Ctrl-C stops daphne, then the embedded services, and the process exits cleanly.
    assert "embedded job worker stopped" in text
    assert proc.returncode == 0, text
