"""Live updates: every authenticated browser joins the channel group "live" and
receives what ``ovmweb.jobs.live.publish`` sends, as JSON. The page decides
what to re-fetch; nothing here touches the database per message."""

from __future__ import annotations

from channels.generic.websocket import AsyncJsonWebsocketConsumer

LIVE_GROUP = "live"


class LiveConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        self.joined = True
        await self.accept()

    async def disconnect(self, code):
        if getattr(self, "joined", False):
            await self.channel_layer.group_discard(LIVE_GROUP, self.channel_name)

    async def receive_json(self, content, **kwargs):
        # The socket is one-way; a browser message is only a keep-alive.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def live_update(self, message):
        await self.send_json({"topic": message.get("topic", ""), "payload": message.get("payload", {})})
