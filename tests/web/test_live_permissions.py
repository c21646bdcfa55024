"""The live feed sends a user only what the user may view, and only to this site's pages."""

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers, get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission

from ovmweb.routing import websocket_urlpatterns
from ovmweb.web.consumers import TOPIC_ACTIONS
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

SITE = [(b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000")]


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _run(coro):
    from django.db import connections

    async def wrapper():
        try:
            return await coro
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(wrapper())


def _user(*codenames):
    user = UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def _communicator(user, headers=SITE):
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), "/ws/live/", headers=headers)
    comm.scope["user"] = user
    return comm


async def _received(user, messages):
    comm = _communicator(user)
    connected, _ = await comm.connect()
    assert connected
    for topic, payload in messages:
        await get_channel_layer().group_send("live", {"type": "live.update", "topic": topic, "payload": payload})
    # A last message everyone here may see marks the end of what was sent.
    await get_channel_layer().group_send("live", {"type": "live.update", "topic": "vm", "payload": {"id": -1}})
    seen = []
    while True:
        message = await comm.receive_json_from(timeout=5)
        if message["payload"].get("id") == -1:
            break
        seen.append((message["topic"], message["payload"]["id"]))
    await comm.disconnect()
    return seen


def test_only_updates_of_objects_the_user_may_view():
    user = _user("view_virtualmachine", "view_job", "view_event")
    messages = [
        ("vm", {"id": 1}),
        ("server", {"id": 2, "name": "hidden"}),
        ("repository", {"id": 3}),
        ("job", {"id": 4, "target_type": "inventory.virtualmachine", "user_id": None}),
        ("job", {"id": 5, "target_type": "inventory.server", "user_id": None}),
        ("job", {"id": 6, "target_type": "inventory.server", "user_id": user.pk}),  # the user's own
        ("event", {"id": 7, "object_type": "inventory.virtualmachine"}),
        ("event", {"id": 8, "object_type": "inventory.server"}),
        ("not-a-topic", {"id": 9}),
    ]
    seen = _run(_received(user, messages))
    assert seen == [("vm", 1), ("job", 4), ("job", 6), ("event", 7)]


def test_a_user_without_permissions_is_refused():
    async def attempt():
        comm = _communicator(await sync_to_async(_user)())
        connected, code = await comm.connect()
        return connected, code

    assert _run(attempt()) == (False, 4403)


@pytest.mark.parametrize(
    "origin", [None, b"http://evil.example", b"http://localhost:9999", b"http://localhost", b"null"]
)
def test_a_foreign_origin_is_refused(origin):
    headers = [(b"host", b"localhost:8000")] + ([(b"origin", origin)] if origin else [])

    async def attempt():
        comm = _communicator(await sync_to_async(_user)("view_virtualmachine"), headers)
        connected, code = await comm.connect()
        return connected, code

    assert _run(attempt()) == (False, 4403)


def test_every_published_topic_is_decided():
    """A topic the feed does not know is never sent: each one the code publishes must be in the table."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "ovmweb"
    published = set()
    for path in root.rglob("*.py"):
        published |= set(re.findall(r"""publish\(\s*["']([\w.]+)["']""", path.read_text()))
    assert published and published <= set(TOPIC_ACTIONS), published - set(TOPIC_ACTIONS)
