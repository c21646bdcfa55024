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
    # A round of metrics was stored (ovmweb.metrics.sampler): only its time, pages re-read what they show.
    "metrics.vm": "vm.view",
    "metrics.server": "server.view",
    "metrics.repository": "repository.view",
}


# Topic -> the kind of object its payload's "id" names (for a role held on some pools only).
TOPIC_LABELS = {"vm": "inventory.virtualmachine", "server": "inventory.server", "repository": "inventory.repository"}


def _grants(user_id: int) -> tuple[frozenset[str], frozenset[str], dict]:
    """(topic actions the user may do, labels of the kinds of object the user may view everywhere,
    {action: pools} for the actions a role grants on some pools only), read afresh: permissions
    or roles withdrawn, or the user deactivated or deleted, since the last look count."""
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return frozenset(), frozenset(), {}
    actions = frozenset(a for a in TOPIC_ACTIONS.values() if permissions.can(user, a))
    pools = {a: permissions.role_pools(user, a) for a in actions if not permissions.everywhere(user, a)}
    return actions, permissions.visible_model_labels(user), pools


def _in_pools(topic: str, payload: dict, *, user_id: int, pools: frozenset, pool_of) -> bool:
    """A message about an object the user sees through a role on ``pools`` only.
    ``pool_of(label, id)`` names the pools of an object (it may read the database)."""
    if topic == "job":
        if payload.get("user_id") == user_id:
            return True
        label, object_id = payload.get("target_type"), payload.get("target_id")
    elif topic == "event":
        label, object_id = payload.get("object_type"), payload.get("object_id")
    elif topic == "vm" and "server_pool_id" in payload:
        return payload["server_pool_id"] in pools
    else:
        label, object_id = TOPIC_LABELS.get(topic), payload.get("id")
    if label is None or object_id is None:
        return topic.startswith("metrics.")  # a round of metrics names no object
    return bool(pool_of(label, object_id) & pools)


def visible(
    topic: str,
    payload: dict,
    *,
    user_id: int,
    actions: frozenset,
    labels: frozenset,
    pools: dict | None = None,
    pool_of=None,
) -> bool:
    """Whether a message of ``topic`` about ``payload`` may reach this user."""
    action = TOPIC_ACTIONS.get(topic)
    if action is None or action not in actions:
        return False
    if pools and action in pools:
        return _in_pools(topic, payload, user_id=user_id, pools=pools[action], pool_of=pool_of)
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
    pools: dict = {}
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
        self.actions, self.labels, self.pools = await database_sync_to_async(_grants)(user_id)
        self.pool_cache: dict = {}
        self.checked_at = time.monotonic()

    def _pool_of(self, label: str, object_id) -> frozenset:
        """The pools of an object, read once per object between two checks (a role on some
        pools costs one query per object the first time a message names it, none after)."""
        key = (label, object_id)
        if key not in self.pool_cache:
            self.pool_cache[key] = permissions.pools_of_label(label, object_id)
        return self.pool_cache[key]

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
        grants = {"user_id": user_id, "actions": self.actions, "labels": self.labels}
        if self.pools:  # a role on some pools: the object's pool may need a look in the database
            shown = await database_sync_to_async(visible)(
                topic, payload, **grants, pools=self.pools, pool_of=self._pool_of
            )
        else:
            shown = visible(topic, payload, **grants)
        if shown:
            await self.send_json({"topic": topic, "payload": payload})
