"""The /ws/live/ socket: authenticated users only; live.update messages of group
"live" reach the browser as JSON."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from ovmweb.routing import websocket_urlpatterns
from tests.factories import SuperUserFactory, VirtualMachineFactory


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    # Each test runs its own event loop; the in-memory layer's queues belong to one loop.
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _run(coro_fn):
    """Run a test coroutine; close the DB connections its sync_to_async thread opened
    (PostgreSQL refuses to drop the test database while they live)."""
    from django.db import connections

    async def wrapper():
        try:
            await coro_fn()
        finally:
            await sync_to_async(connections.close_all)()

    asyncio.run(wrapper())


def _communicator(user):
    app = URLRouter(websocket_urlpatterns)
    # The page that opens the socket is this site's (the consumer checks Origin against Host).
    headers = [(b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000")]
    comm = WebsocketCommunicator(app, "/ws/live/", headers=headers)
    comm.scope["user"] = user
    return comm


@pytest.mark.django_db(transaction=True)
def test_anonymous_socket_is_refused():
    _run(_test_anonymous_socket_is_refused)


async def _test_anonymous_socket_is_refused():
    comm = _communicator(AnonymousUser())
    connected, code = await comm.connect()
    assert not connected
    assert code == 4401


@pytest.mark.django_db(transaction=True)
def test_live_update_reaches_authenticated_socket():
    _run(_test_live_update_reaches_authenticated_socket)


async def _test_live_update_reaches_authenticated_socket():
    user = await sync_to_async(SuperUserFactory)(username="live-admin")
    comm = _communicator(user)
    connected, _ = await comm.connect()
    assert connected
    await get_channel_layer().group_send(
        "live", {"type": "live.update", "topic": "vm", "payload": {"id": 7, "status": "RUNNING"}}
    )
    message = await comm.receive_json_from(timeout=2)
    assert message == {"topic": "vm", "payload": {"id": 7, "status": "RUNNING"}}
    await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_service_status_change_is_pushed():
    _run(_test_service_status_change_is_pushed)


async def _test_service_status_change_is_pushed():
    """A real status change through core's vm_set_status arrives on the socket."""
    from ovmweb.inventory.services.vm_state import vm_set_status

    user = await sync_to_async(SuperUserFactory)(username="live-admin2")
    vm = await sync_to_async(VirtualMachineFactory)(name="pushed")
    comm = _communicator(user)
    connected, _ = await comm.connect()
    assert connected
    await sync_to_async(vm_set_status)(vm=vm, status="RUNNING", reason="test")
    seen = []
    for _ in range(5):
        msg = await comm.receive_json_from(timeout=3)
        seen.append(msg)
        if msg["topic"] == "vm":
            break
    vm_msgs = [m for m in seen if m["topic"] == "vm"]
    assert vm_msgs and vm_msgs[0]["payload"]["id"] == vm.pk and vm_msgs[0]["payload"]["status"] == "RUNNING"
    await comm.disconnect()
