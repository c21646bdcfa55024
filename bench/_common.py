"""The start every benchmark shares: its own temporary var directory and SQLite
database, so that a run never touches the developer's data, nor a PostgreSQL, Redis
or hypervisor URI configured in the shell, and figures compare across machines.

Benchmarks are run as ``.venv/bin/python bench/<name>.py``, which puts ``bench/`` first
on ``sys.path``; they import this module as ``_common``. Importing it has no side
effects (``make bench`` runs every ``bench/*.py``, this one included): the work is
done by ``isolated_django()``, called before any Django import.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUEST_ISO = ROOT / "var" / "guest" / "tiny.iso"

# Settings that would point a benchmark at shared services instead of its own files.
_OUTSIDE = ("OVMWEB_DATABASE_URL", "OVMWEB_REDIS_URL", "OVMWEB_HYPERVISOR_URI")


def isolated_django(prefix: str, **extra: str) -> tuple[str, dict[str, str]]:
    """Make a temporary var directory, point this process's environment at it and
    set Django up. ``extra`` adds OVMWEB_* variables. Returns (the directory, the
    variables set), the latter for a subprocess that must see the same estate.

    The log level stays as the shell has it, WARNING otherwise, so a run can be
    made verbose without editing the bench."""
    sys.path.insert(0, str(ROOT))
    tmp = tempfile.mkdtemp(prefix=prefix)
    env = {
        "OVMWEB_VAR_DIR": tmp,
        "OVMWEB_SQLITE_PATH": os.path.join(tmp, "bench.sqlite3"),
        "DJANGO_SETTINGS_MODULE": "ovmweb.settings.base",
        "OVMWEB_LOG_LEVEL": os.environ.get("OVMWEB_LOG_LEVEL", "WARNING"),
        # Fixed, so settings need not generate and store one per run.
        "OVMWEB_SECRET_KEY": "bench-" + "x" * 50,
        **extra,
    }
    for key in _OUTSIDE:
        os.environ.pop(key, None)
    os.environ.update(env)

    import django

    django.setup()
    return tmp, env


def local_estate(user, tmp: str):
    """This machine's libvirtd discovered as a ``local`` server in a new pool, with a local
    repository in ``tmp``/repo. Jobs run in-process. Returns (pool, server, repository)."""
    from ovmweb.inventory.models import Repository, Server
    from ovmweb.inventory.services import pools, repositories, servers
    from ovmweb.jobs.testing import run_pending_jobs

    pool = pools.server_pool_create(user=user, name="bench")
    servers.server_discover(user=user, hostname="localhost", transport="local", name="local", server_pool=pool)
    run_pending_jobs()
    server = Server.objects.get(name="local")
    if server.status != "RUNNING":
        raise SystemExit(f"this machine's libvirtd could not be discovered: {server.status_message}")
    repo_path = Path(tmp) / "repo"
    repo_path.mkdir()
    repositories.repository_create(
        user=user, name="repo", kind="LOCAL", path=str(repo_path), server=server, server_pools=[pool]
    )
    run_pending_jobs()
    return pool, server, Repository.objects.get(name="repo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")
