"""Close a user's consoles when that user logs out."""

from __future__ import annotations

import asyncio
import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def close_user_consoles(*, user_id: int, code: int) -> None:
    from ovmweb.consoles.consumers import user_group

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "console.close", "code": code}
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    try:
        if loop is not None:
            # Sync code running on the loop thread itself: schedule, never block it.
            loop.create_task(layer.group_send(user_group(user_id), message))
        else:
            async_to_sync(layer.group_send)(user_group(user_id), message)
    except Exception:  # logging out must work even if the channel layer is down
        logger.exception("could not close consoles of user %s", user_id)


def on_user_logged_out(sender, request, user, **kwargs):
    if user is not None and user.pk is not None:
        from ovmweb.consoles.consumers import CLOSE_LOGGED_OUT

        close_user_consoles(user_id=user.pk, code=CLOSE_LOGGED_OUT)
