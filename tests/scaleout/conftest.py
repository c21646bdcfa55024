"""A scaled-out ovmweb as the README tells a user to deploy it, started by the tests:
PostgreSQL (scripts/start-postgres.sh if it is down; a database of our own), a redis-server,
three ``runovmweb --no-services`` web processes and two ``runjobworker`` processes (RQ on
Redis), behind Debian's nginx on one port. nginx balances ``/`` round-robin over the three,
and ``/web0/`` .. ``/web2/`` reach one web process each, so a test can choose which one
serves a request. The estate (this machine's libvirtd as server ``local``, a repository, the
tiny guest's ISO, a stopped VM ``scale-tiny``) is made before the processes start."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis
import requests
from rq import Worker

from tests.cli.conftest import SETUP, _cleanup, _free_port

ROOT = Path(__file__).resolve().parents[2]
PG = {"host": "127.0.0.1", "port": 5432, "user": "ovmweb", "password": "ovmweb"}
WEBS = 3
TOKEN = """
from django.contrib.auth import get_user_model
from ovmweb.accounts.tokens import create_token
print(create_token(user=get_user_model().objects.get(username="admin"), name="scaleout")[1])
"""

NGINX = """
{user}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {tmp}/nginx-access.log;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    upstream ovmweb {{ {servers} }}
    {singles}
    server {{
        listen 127.0.0.1:{port};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_read_timeout 3600s;
        add_header X-Upstream $upstream_addr always;
        location / {{ proxy_pass http://ovmweb; }}
        {locations}
    }}
}}
"""


def _wait(predicate, what: str, timeout: float = 60, procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for proc, log in procs:
            assert proc.poll() is None, f"{what}: a process exited: {Path(log).read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.2)


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _postgres_database():
    """A fresh database on the local PostgreSQL (started if down); dropped afterwards."""
    try:
        psycopg.connect(dbname="postgres", connect_timeout=3, **PG).close()
    except psycopg.OperationalError:
        subprocess.run(["bash", str(ROOT / "scripts" / "start-postgres.sh")], check=True, timeout=120)
    name = f"ovmweb_scaleout_{secrets.token_hex(4)}"
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop_database(name: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _redis_server(tmp: Path):
    port = _free_port()
    redis_bin = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [redis_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen([*args, "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    _wait(lambda: _listening(port), "redis-server", timeout=20)
    return proc, url


def _nginx_conf(tmp: Path, port: int, web_ports: list[int]) -> Path:
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX.format(
            user="user root root;" if os.geteuid() == 0 else "",
            tmp=tmp,
            port=port,
            servers=" ".join(f"server 127.0.0.1:{p};" for p in web_ports),
            singles="\n    ".join(f"upstream web{i} {{ server 127.0.0.1:{p}; }}" for i, p in enumerate(web_ports)),
            locations="\n        ".join(f"location /web{i}/ {{ proxy_pass http://web{i}/; }}" for i in range(WEBS)),
        )
    )
    return conf


class Cluster:
    """The started processes, and what the tests need to talk to them."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.procs: list[tuple[subprocess.Popen, Path]] = []
        self.env: dict = {}
        self.url = ""
        self.redis_url = ""
        self.token = ""
        self.workers: list[subprocess.Popen] = []

    def spawn(self, name: str, args: list[str], env: dict) -> subprocess.Popen:
        log = self.tmp / f"{name}.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        self.procs.append((proc, log))
        return proc

    def manage(self, *args, redis_env: bool = True, timeout: float = 180) -> str:
        env = self.env if redis_env else {k: v for k, v in self.env.items() if k != "OVMWEB_REDIS_URL"}
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    def web(self, index: int | None = None) -> str:
        """The proxy's URL: round-robin over the web processes, or the one of ``index``."""
        return self.url if index is None else f"{self.url}/web{index}"

    def api(self, method: str, path: str, *, via: int | None = None, **kwargs):
        response = requests.request(
            method,
            f"{self.web(via)}/api/v1/{path}",
            headers={"Authorization": f"Token {self.token}", "Accept": "application/json"},
            timeout=60,
            **kwargs,
        )
        assert response.status_code < 400, (response.status_code, response.text[:500])
        return response

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-1500:]}" for _p, log in self.procs)

    def stop(self) -> None:
        for proc, _log in reversed(self.procs):
            proc.terminate()
        for proc, _log in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def _base_env(tmp: Path, database: str, redis_url: str) -> dict:
    base = random.randrange(20000, 40000, 1000)  # console ports of our own on this shared libvirtd
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        DJANGO_SETTINGS_MODULE="ovmweb.settings.base",
        OVMWEB_VAR_DIR=str(tmp),
        OVMWEB_LOCAL_REPOSITORY_PATH=str(tmp / "repositories" / "local"),
        OVMWEB_ALLOWED_HOSTS="127.0.0.1,localhost",
        OVMWEB_DATABASE_URL=f"postgres://{PG['user']}:{PG['password']}@{PG['host']}:{PG['port']}/{database}",
        OVMWEB_REDIS_URL=redis_url,
        OVMWEB_MONITOR="0",
        OVMWEB_LOG_LEVEL="INFO",
        OVMWEB_SERIAL_PORT_BASE=str(base),
        OVMWEB_VNC_PORT_BASE=str(base + 500),
    )
    return env


def _make_estate(cluster: Cluster) -> None:
    cluster.manage("migrate", "--noinput")
    # Made with the database job backend, run in this very process (run_pending_jobs).
    iso = str(ROOT / "var" / "guest" / "tiny.iso")
    setup = SETUP.format(tmp=str(cluster.tmp), iso=iso, password=secrets.token_hex(8)).replace("cli-", "scale-")
    cluster.manage("shell", "-c", setup, redis_env=False)
    cluster.token = cluster.manage("shell", "-c", TOKEN).strip().splitlines()[-1]


def _start_processes(cluster: Cluster) -> None:
    web_ports = [_free_port() for _ in range(WEBS)]
    for i, port in enumerate(web_ports):
        args = [sys.executable, "manage.py", "runovmweb", "--no-services", "--bind", f"127.0.0.1:{port}"]
        cluster.spawn(f"web{i}", args, cluster.env)
    worker = [sys.executable, "tests/scaleout/worker.py"]
    # As the README says: every worker but one with --no-recover.
    cluster.workers = [
        cluster.spawn("worker0", worker, cluster.env),
        cluster.spawn("worker1", [*worker, "--no-recover"], cluster.env),
    ]
    proxy_port = _free_port()
    conf = _nginx_conf(cluster.tmp, proxy_port, web_ports)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    cluster.spawn(
        "nginx",
        [nginx, "-p", str(cluster.tmp), "-e", str(cluster.tmp / "nginx-error.log"), "-c", str(conf)]
        + ["-g", "daemon off;"],
        cluster.env,
    )
    cluster.url = f"http://127.0.0.1:{proxy_port}"
    for port in [*web_ports, proxy_port]:
        _wait(lambda port=port: _listening(port), f"port {port}", procs=cluster.procs)
    connection = redis.Redis.from_url(cluster.redis_url)
    _wait(lambda: len(Worker.all(connection=connection)) == 2, "two RQ workers", procs=cluster.procs)


@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaleout")
    database = _postgres_database()
    redis_proc, redis_url = _redis_server(tmp)
    cluster = Cluster(tmp)
    cluster.redis_url = redis_url
    cluster.env = _base_env(tmp, database, redis_url)
    try:
        _make_estate(cluster)
        _start_processes(cluster)
        yield cluster
    finally:
        cluster.stop()
        with contextlib.suppress(Exception):
            _cleanup(cluster.env, tmp)
        redis_proc.terminate()
        redis_proc.wait(10)
        _drop_database(database)
