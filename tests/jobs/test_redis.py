"""Scale-out mode: jobs queued on Redis (django-tasks RQ backend) run in a
separate worker process, and their live updates reach listeners in another
process through channels-redis. Real redis-server, real processes."""

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    port = _free_port()
    server = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert server.poll() is None and time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


def _env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVMWEB_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(DJANGO_SETTINGS_MODULE="ovmweb.settings.base", OVMWEB_VAR_DIR=str(tmp_path), OVMWEB_MONITOR="0", **extra)
    return env


def _manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


SUBMIT = (
    "from django.db import transaction\n"
    "from ovmweb.jobs.services import job_submit\n"
    "with transaction.atomic():\n"
    "    job = job_submit(operation='no.such.operation', summary='queued on redis')\n"
    "print(job.pk)"
)


def test_separate_worker_on_redis_publishes_to_other_processes(tmp_path, redis_url):
    from channels_redis.core import RedisChannelLayer

    env = _env(tmp_path, OVMWEB_REDIS_URL=redis_url)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    worker_log = open(tmp_path / "worker.log", "w+")

    async def scenario():
        # As ovmweb.settings.base configures it (socket timeout above the blocking receive).
        layer = RedisChannelLayer(hosts=[{"address": redis_url, "socket_timeout": 30}])
        channel = await layer.new_channel()
        await layer.group_add("live", channel)
        submitted = await asyncio.to_thread(_manage, env, "shell", "-c", SUBMIT)
        assert submitted.returncode == 0, submitted.stderr
        job_id = int(submitted.stdout.strip().splitlines()[-1])
        worker = subprocess.Popen(
            [sys.executable, "manage.py", "runjobworker"],
            cwd=ROOT,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        seen = []

        async def collect():
            # One uninterrupted receive loop: cancelling a channels-redis
            # receive midway (wait_for) can break its connection.
            while True:
                message = await layer.receive(channel)
                seen.append(message)
                payload = message["payload"]
                if message["topic"] == "job" and payload["id"] == job_id and payload["status"] == "FAILURE":
                    return

        collector = asyncio.create_task(collect())
        try:
            deadline = time.monotonic() + 90
            while not collector.done():
                assert worker.poll() is None, (tmp_path / "worker.log").read_text()
                assert time.monotonic() < deadline, (seen, (tmp_path / "worker.log").read_text())
                await asyncio.sleep(0.3)
            collector.result()
        finally:
            collector.cancel()
            worker.terminate()
            worker.wait(20)
            await layer.flush()
        return job_id, seen

    job_id, seen = asyncio.run(scenario())
    worker_log.close()
    statuses = [m["payload"]["status"] for m in seen if m["topic"] == "job" and m["payload"]["id"] == job_id]
    # QUEUED comes from the submitting process, RUNNING and FAILURE from the worker process.
    assert statuses[0] == "QUEUED" and "RUNNING" in statuses and statuses[-1] == "FAILURE", statuses
    state = _manage(
        env,
        "shell",
        "-c",
        f"from ovmweb.jobs.models import Job; j = Job.objects.get(pk={job_id}); print(j.status, j.task_id)",
    )
    status, task_id = state.stdout.split()[-2:]
    assert status == "FAILURE" and task_id  # the RQ job id was recorded on the job
    assert "reach NO browser" not in (tmp_path / "worker.log").read_text()


def test_separate_worker_with_in_memory_layer_warns_loudly(tmp_path):
    env = _env(tmp_path)
    assert _manage(env, "migrate", "--noinput").returncode == 0
    result = _manage(env, "runjobworker", "--batch")
    assert result.returncode == 0, result.stderr
    assert "reach NO browser" in result.stderr + result.stdout
