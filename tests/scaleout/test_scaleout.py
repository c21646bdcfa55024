"""The scale-out of the README, tested as a user deploys it (see conftest.py): three web
processes and two job workers on PostgreSQL and Redis behind nginx. A job run by a worker
reaches the live feed of every web process; 200 queued jobs run exactly once each across
the two workers; a serial console opened through each web process reaches the guest."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Origin

from .conftest import WEBS

pytestmark = pytest.mark.integration

SUBMIT = """
from django.db import transaction
from ovmweb.jobs.services import job_submit
with transaction.atomic():
    jobs = [job_submit(operation="test.count", summary=f"count {i}") for i in range(200)]
print(*[j.pk for j in jobs])
"""
RUNS = """
import json
from ovmweb.jobs.models import Event, Job
ids = [int(i) for i in {ids!r}.split()]
print(json.dumps({{
    "status": sorted(set(Job.objects.filter(pk__in=ids).values_list("status", flat=True))),
    "live": Job.objects.filter(pk__in=ids, status__in=["QUEUED", "RUNNING"]).count(),
    "runs": list(Event.objects.filter(type="test.count", job__in=ids).values_list("job", "text")),
}}))
"""


def _ws(cluster, via: int, path: str):
    url = cluster.web(via).replace("http://", "ws://", 1) + path
    return connect(
        url,
        origin=Origin(cluster.url),
        additional_headers={"Authorization": f"Token {cluster.token}"},
        max_size=None,
        open_timeout=30,
    )


async def _feed_until(ws, job_id: int, status: str, timeout: float) -> list[dict]:
    """The updates of job ``job_id`` a live feed delivers, up to the one with ``status``."""
    seen = []
    async with asyncio.timeout(timeout):
        async for raw in ws:
            message = json.loads(raw)
            payload = message.get("payload") or {}
            if message.get("topic") == "job" and payload.get("id") == job_id:
                seen.append(payload)
                if payload["status"] == status:
                    return seen
    return seen


@pytest.fixture(scope="package")
def started(cluster):
    """The VM started by a job submitted through web process 0 and run by a worker, with the
    job updates the live feed of each web process delivered meanwhile."""
    vm = next(v for v in cluster.api("GET", "vms/", via=0).json()["results"] if v["name"] == "scale-tiny")

    async def scenario():
        feeds = [await _ws(cluster, i, "/ws/live/") for i in range(WEBS)]
        try:
            await asyncio.sleep(1)  # every feed joined its group before the job is queued
            job = (await asyncio.to_thread(cluster.api, "POST", f"vms/{vm['id']}/start/", via=0)).json()
            return job, await asyncio.gather(*[_feed_until(ws, job["id"], "SUCCESS", 120) for ws in feeds])
        finally:
            for ws in feeds:
                await ws.close()

    job, updates = asyncio.run(scenario())
    return {"vm": vm, "job": job, "updates": updates}


def test_a_job_run_by_a_worker_updates_browsers_on_every_web_process(cluster, started):
    assert started["job"]["operation"] == "vm.start"
    for i, updates in enumerate(started["updates"]):
        statuses = [u["status"] for u in updates]
        # RUNNING and SUCCESS are published by the worker process, through Redis.
        assert "RUNNING" in statuses and statuses[-1] == "SUCCESS", (i, statuses, cluster.logs())
    assert cluster.api("GET", f"vms/{started['vm']['id']}/").json()["status"] == "RUNNING"


def test_200_queued_jobs_run_exactly_once_across_two_workers(cluster):
    ids = cluster.manage("shell", "-c", SUBMIT).strip().splitlines()[-1]
    deadline = time.monotonic() + 120
    while True:
        state = json.loads(cluster.manage("shell", "-c", RUNS.format(ids=ids)).strip().splitlines()[-1])
        if not state["live"]:
            break
        assert time.monotonic() < deadline, (state["live"], cluster.logs())
        time.sleep(1)
    assert state["status"] == ["SUCCESS"]
    jobs = [int(i) for i in ids.split()]
    assert sorted(job for job, _text in state["runs"]) == sorted(jobs)  # each exactly once
    workers = {text for _job, text in state["runs"]}
    assert workers == {f"worker {w.pid}" for w in cluster.workers}  # both workers took their share


async def _console_echo(cluster, via: int, ws_path: str, timeout: float) -> bytes:
    """Type a command into the serial console every 2 s (the guest may still be booting)
    until its answer comes back."""
    seen = b""
    async with _ws(cluster, via, ws_path) as ws:
        async with asyncio.timeout(timeout):
            while b"hello-42" not in seen:
                await ws.send(b"echo hello-$((6*7))\n")
                try:
                    async with asyncio.timeout(2):
                        while b"hello-42" not in seen:
                            message = await ws.recv()
                            seen += message if isinstance(message, bytes) else message.encode()
                except TimeoutError:
                    continue
    return seen


def test_a_serial_console_through_each_web_process_reaches_the_guest(cluster, started):
    vm_id = started["vm"]["id"]
    for i in range(WEBS):
        # The ticket comes from another web process than the one that opens the socket.
        ticket = cluster.api("POST", f"vms/{vm_id}/console-tickets/", via=(i + 1) % WEBS, json={"kind": "serial"})
        parts = urlsplit(ticket.json()["ws_url"])
        seen = asyncio.run(_console_echo(cluster, i, f"{parts.path}?{parts.query}", timeout=60))
        assert b"hello-42" in seen, (i, seen[-500:])
