"""WebSockets signed in by ``Authorization: Token`` (the command line): the token's user,
whatever session; a bad token is no user at all."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from ovmweb.accounts.tokens import create_token
from ovmweb.accounts.websocket import TokenAuthMiddleware
from ovmweb.routing import websocket_urlpatterns
from tests.factories import SuperUserFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def fresh_channel_layer():
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def _connect(authorization: str | None) -> tuple[bool, int | None]:
    from django.db import connections

    async def go():
        headers = [(b"host", b"localhost:8000"), (b"origin", b"http://localhost:8000")]
        if authorization is not None:
            headers.append((b"authorization", authorization.encode()))
        comm = WebsocketCommunicator(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)), "/ws/live/", headers)
        comm.scope["user"] = AnonymousUser()  # no session: what AuthMiddlewareStack gives a script
        try:
            connected, code = await comm.connect()
            if connected:
                await comm.disconnect()
            return connected, code
        finally:
            await sync_to_async(connections.close_all)()

    return asyncio.run(go())


def test_a_valid_token_opens_the_live_feed():
    _token, key = create_token(user=SuperUserFactory())
    assert _connect(f"Token {key}")[0] is True


@pytest.mark.parametrize("authorization", [None, "Token " + "0" * 40, "Bearer abc"])
def test_no_or_a_wrong_token_is_not_signed_in(authorization):
    create_token(user=SuperUserFactory())
    assert _connect(authorization) == (False, 4401)
