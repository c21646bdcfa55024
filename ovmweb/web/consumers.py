"""Live updates: an authenticated browser of this site (Origin checked as for the consoles)
joins the channel group "live" and receives, as JSON, what ``ovmweb.jobs.live.publish``
sends about objects it may view (``ovmweb.inventory.permissions``): VMs, servers and
repositories by their view action, jobs and events by what they are about (and a job
always to its owner). A topic nobody decided on is not sent.

What the user may view is read when the socket opens and again at most every
``RECHECK`` seconds, when a message arrives: nothing touches the database per message."""

from __future__ import annotations

import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from ovmweb.core.websocket import origin_allowed
from ovmweb.inventory import permissions

LIVE_GROUP = "live"
CLOSE_NOT_LOGGED_IN = 4401
CLOSE_FORBIDDEN = 4403
RECHECK = 60.0

# Topic -> the action that shows its objects. Jobs and events are narrowed further by what they are about.
TOPIC_ACTIONS = {
    "vm": "vm.view",
    "server": "server.view",
    "repository": "repository.view",
    "job": "job.view",
    "event": "event.view",
}


def _grants(user_id: int) -> tuple[frozenset[str], frozenset[str]]:
    """(topic actions the user may do, labels of the kinds of object the user may view), read
    afresh: permissions withdrawn, or the user deactivated or deleted, since the last look count."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return frozenset(), frozenset()
    actions = frozenset(a for a in TOPIC_ACTIONS.values() if permissions.can(user, a))
    return actions, permissions.visible_model_labels(user)


def visible(topic: str, payload: dict, *, user_id: int, actions: frozenset, labels: frozenset) -> bool:
    """Whether a message of ``topic`` about ``payload`` may reach this user."""
    action = TOPIC_ACTIONS.get(topic)
    if action is None or action not in actions:
        return False
    if topic == "job":
        target = payload.get("target_type")
        return payload.get("user_id") == user_id or target is None or target in labels
    if topic == "event":
        about = payload.get("object_type")
        return about is None or about in labels
    return True


class LiveConsumer(AsyncJsonWebsocketConsumer):
    joined = False
    actions: frozenset = frozenset()
    labels: frozenset = frozenset()
    checked_at = 0.0

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_LOGGED_IN)
            return
        if not origin_allowed(self.scope):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self._check(user.pk)
        if not self.actions:
            await self.close(code=CLOSE_FORBIDDEN)  # nothing this user may see
            return
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def _check(self, user_id: int) -> None:
        self.actions, self.labels = await database_sync_to_async(_grants)(user_id)
        self.checked_at = time.monotonic()

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The socket is one-way; a browser message is only a keep-alive.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_update(self, message):
        user_id = self.scope["user"].pk
        if time.monotonic() - self.checked_at > RECHECK:
            await self._check(user_id)  # permissions withdrawn meanwhile take effect here
        topic, payload = message.get("topic", ""), message.get("payload", {})
        if visible(topic, payload, user_id=user_id, actions=self.actions, labels=self.labels):
            await self.send_json({"topic": topic, "payload": payload})
