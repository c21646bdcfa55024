"""Driving the real ASGI application (origin check, cookies, sessions, routing) in tests."""

from __future__ import annotations

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from ovmweb.consoles import services


def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def headers(user=None, *, origin: str | None = "http://localhost:8000", host: str = "localhost:8000") -> list:
    result = [(b"host", host.encode())]
    if user is not None:
        result.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={session_cookie(user)}".encode()))
    if origin is not None:
        result.append((b"origin", origin.encode()))
    return result


def issue(user, vm, kind: str) -> str:
    return services.ticket_issue(user=user, vm=vm, kind=kind)[1]


def communicator(path: str, hdrs: list, app=None) -> WebsocketCommunicator:
    if app is None:
        from ovmweb.asgi import application as app
    return WebsocketCommunicator(app, path, headers=hdrs)


async def collect(comm: WebsocketCommunicator, *, timeout: float = 10) -> tuple[bytes, int | None]:
    """Every binary frame until the server closes; returns (bytes, close code)."""
    chunks = []
    while True:
        message = await comm.receive_output(timeout)
        if message["type"] == "websocket.send":
            chunks.append(message.get("bytes") or message.get("text", "").encode())
        elif message["type"] == "websocket.close":
            return b"".join(chunks), message.get("code")
