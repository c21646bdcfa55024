"""WebSocket sign-in by API token, for clients that are not browsers (the ``ovmweb``
command line's serial console and ``jobs watch``).

A request carrying ``Authorization: Token <key>`` is the token's user, whatever
session cookie it has; without the header the session decides, as before. Browsers
cannot put an Authorization header on a WebSocket, so a page of another site cannot
use this to borrow anyone's credentials; the consumers still check Origin and, for
consoles, the single-use ticket."""

from __future__ import annotations

import logging

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from django.contrib.auth.models import AnonymousUser

from . import tokens

security_log = logging.getLogger("ovmweb.security")


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return value.decode("latin1")
    return ""


@database_sync_to_async
def _user_of(key: str):
    token = tokens.authenticate_key(key)
    if token is None or not token.user.is_active:
        return None
    return token.user


class TokenAuthMiddleware(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        keyword, _sep, key = _header(scope, b"authorization").strip().partition(" ")
        if keyword == "Token" and key.strip():
            scope = dict(scope)
            user = await _user_of(key.strip())
            if user is None:
                client = scope.get("client") or ("",)
                security_log.warning("API token refused on a WebSocket: address=%s", client[0])
            scope["user"] = user or AnonymousUser()
        return await super().__call__(scope, receive, send)
