import asyncio
import socket

import pytest
from asgiref.sync import async_to_sync

from ovmweb.tunnels import aiossh
from tests.tunnels.sshd import sshd  # noqa: F401


@pytest.fixture
def echo_port(sshd):  # noqa: F811
    # sshd's own port is a TCP service on the server that is always there to tunnel to.
    return sshd["port"]


def run(coro_fn):
    """Run ``coro_fn()`` on a loop of its own, closing that loop's asyncssh connections after."""

    async def wrapped():
        try:
            return await coro_fn()
        finally:
            await aiossh.close_all()

    return async_to_sync(wrapped)()


async def banner(stream) -> bytes:
    """The first four bytes sshd (the tunnels' target) sends: b"SSH-"."""
    data = b""
    while len(data) < 4:
        chunk = await asyncio.wait_for(stream.read(4 - len(data)), 10)
        assert chunk
        data += chunk
    return data


async def drain(stream) -> None:
    """Read until the stream's end (b"")."""
    while await asyncio.wait_for(stream.read(1 << 20), 10):
        pass


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
