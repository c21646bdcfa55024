"""Socket console streams past descriptor 1023 (hundreds of consoles open at once)."""

from __future__ import annotations

import asyncio
import os
import resource
import socket

import pytest

from ovmweb.tunnels import streams


@pytest.fixture
def high_pair():
    """A socket pair whose first end has a descriptor above 1023 (select() cannot take those)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 2000)
    ours.close()
    yield socket.socket(fileno=high), theirs
    theirs.close()


def test_data_ready_of_a_socket_stream_past_descriptor_1023(high_pair):
    ours, theirs = high_pair

    async def go():
        stream = streams.SocketStream(ours, asyncio.get_running_loop())
        assert ours.fileno() >= 1024
        assert stream.data_ready() is False
        theirs.sendall(b"x")
        await asyncio.sleep(0.01)
        assert stream.data_ready() is True
        assert stream.read_nowait(10) == b"x"
        assert stream.data_ready() is False
        theirs.shutdown(socket.SHUT_WR)
        await asyncio.sleep(0.01)
        assert stream.data_ready() is True  # the end of the stream is there to read
        assert stream.read_nowait(10) == b""
        await stream.close()

    asyncio.run(go())
