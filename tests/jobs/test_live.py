"""Live updates reach channel-layer group "live", only for committed changes."""

import asyncio
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.test import override_settings

from ovmweb.jobs import live
from ovmweb.jobs.registry import JobContext
from ovmweb.jobs.services import event_record, job_submit
from ovmweb.jobs.testing import run_pending_jobs

pytestmark = pytest.mark.django_db(transaction=True)

IN_MEMORY = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


async def _drain(layer, channel, timeout=0.5):
    messages = []
    while True:
        try:
            messages.append(await asyncio.wait_for(layer.receive(channel), timeout))
        except TimeoutError:
            return messages


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
def test_job_lifecycle_is_published_after_commit_only(vm):
    layer = get_channel_layer()

    def submit_and_roll_back():
        try:
            with transaction.atomic():
                job_submit(operation="test.noop", summary="never", target=vm, lock=[vm])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass

    def submit_and_run():
        with transaction.atomic():
            job = job_submit(operation="test.fail", summary="visible", target=vm, lock=[vm])
        run_pending_jobs()
        return job

    async def scenario():
        channel = await layer.new_channel()
        await layer.group_add(live.GROUP, channel)
        await sync_to_async(submit_and_roll_back)()
        assert await _drain(layer, channel, 0.3) == []
        job = await sync_to_async(submit_and_run)()
        return job, await _drain(layer, channel)

    job, messages = async_to_sync(scenario)()
    assert all(m["type"] == "live.update" for m in messages)
    job_states = [m["payload"]["status"] for m in messages if m["topic"] == "job" and m["payload"]["id"] == job.pk]
    assert job_states[0] == "QUEUED" and "RUNNING" in job_states and job_states[-1] == "FAILURE"
    progress = [m["payload"]["progress"] for m in messages if m["topic"] == "job"]
    assert 30 in progress  # the operation's ctx.progress(30, ...)
    events = [m["payload"] for m in messages if m["topic"] == "event"]
    assert events and events[-1]["severity"] == "ERROR" and events[-1]["object_id"] == vm.pk


@override_settings(CHANNEL_LAYERS=IN_MEMORY)
def test_worker_thread_publishes_into_the_serving_loop(vm):
    """The embedded worker publishes from its own thread into the loop that
    serves the WebSockets (daphne's, under runovmweb)."""
    layer = get_channel_layer()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    received: list[dict] = []

    async def consumer():
        channel = await layer.new_channel()
        await layer.group_add(live.GROUP, channel)
        ready.set()
        received.append(await asyncio.wait_for(layer.receive(channel), 10))

    serving = threading.Thread(target=lambda: loop.run_until_complete(consumer()))
    serving.start()
    try:
        assert ready.wait(10)
        live.set_home_loop(loop)
        event = event_record(obj=vm, type="vm.note", text="from the worker thread")
        serving.join(15)
    finally:
        live.set_home_loop(None)
        loop.call_soon_threadsafe(lambda: None)
        serving.join(5)
        loop.close()
    assert received and received[0]["topic"] == "event"
    assert received[0]["payload"]["id"] == event.pk
    assert received[0]["payload"]["text"] == "from the worker thread"


@override_settings(CHANNEL_LAYERS={})
def test_publish_without_channel_layer_is_harmless(vm):
    with transaction.atomic():
        job = job_submit(operation="test.noop", summary="quiet", target=vm)
    JobContext(job).progress(10)
    assert run_pending_jobs() == 1


def test_isolated_worker_warns_loudly(caplog):
    with override_settings(CHANNEL_LAYERS=IN_MEMORY):
        assert live.warn_if_isolated("runjobworker") is True
    assert "reach NO browser" in caplog.text
    with override_settings(
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer",
                "CONFIG": {"hosts": ["redis://127.0.0.1:1"]},
            }
        }
    ):
        assert live.layer_spans_processes() is True
