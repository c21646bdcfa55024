"""Flow control between a console consumer and the WebSocket server under it.

daphne gives an ASGI application no backpressure: ``websocket.send`` appends
to Twisted's write buffer and returns at once, so a fast console (a VNC
screen, a serial log) can queue hundreds of MiB in memory. Worse, the close
frame queues behind that data while autobahn's close-handshake timer (1 s)
runs, and when it fires the connection is dropped with the tail of the stream
still unsent (seen in the field notes: 2-55 of 200 sessions lost data).

Under daphne this module registers the consumer as the Twisted transport's
streaming producer, so Twisted says when its buffer is over 64 KiB (pause) and
when it has drained (resume); the consumer then reads the next chunk from the
console only when the previous one is on its way. It also gives the close
handshake time to follow the data. Under any other ASGI server (uvicorn
awaits the socket draining inside ``send``; the test communicator) it does
nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging

logger = logging.getLogger(__name__)

# Seconds for the client to answer our close frame; it is sent after the data
# has left Twisted's buffer, so this covers only the kernel's socket buffers.
CLOSE_HANDSHAKE_TIMEOUT = 30


def _daphne_protocol(send):
    """daphne's WebSocket protocol behind an ASGI send callable, or None.

    daphne passes ``partial(server.handle_reply, protocol)``; Channels'
    session middleware wraps it in a bound method whose instance keeps it as
    ``real_send``.
    """
    for _ in range(8):
        if isinstance(send, functools.partial):
            protocol = send.args[0] if send.args else None
            if protocol is not None and hasattr(protocol, "sendMessage") and hasattr(protocol, "transport"):
                return protocol
            return None
        owner = getattr(send, "__self__", None)
        if owner is None or not hasattr(owner, "real_send"):
            return None
        send = owner.real_send
    return None


class WriteFlow:
    """Implements Twisted's IPushProducer; all callbacks arrive on the asyncio loop (asyncio reactor)."""

    def __init__(self, send):
        self._writable = asyncio.Event()
        self._writable.set()
        self.stopped = False
        self._transport = None
        protocol = _daphne_protocol(send)
        if protocol is None:
            return
        transport = getattr(protocol, "transport", None)
        if transport is None or not hasattr(transport, "registerProducer"):
            return
        try:
            if getattr(transport, "producer", None) is not None:
                # daphne leaves the HTTP channel registered after the upgrade;
                # it only pauses reading, which would also stall keystrokes.
                transport.unregisterProducer()
            transport.registerProducer(self, True)
        except Exception:  # an unexpected transport: run without flow control rather than fail the console
            logger.warning("console flow control unavailable on %r", type(transport).__name__, exc_info=True)
            return
        self._transport = transport
        protocol.closeHandshakeTimeout = CLOSE_HANDSHAKE_TIMEOUT

    @property
    def active(self) -> bool:
        return self._transport is not None

    # IPushProducer
    def pauseProducing(self) -> None:
        self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:
        self.stopped = True
        self._writable.set()

    async def wait_writable(self) -> None:
        """Return once the server's write buffer is below its high-water mark (or the connection is gone)."""
        await self._writable.wait()

    def pause_reading(self) -> None:
        """Stop reading from the browser (the console cannot take more input now)."""
        if self._transport is not None and not self.stopped:
            self._transport.pauseProducing()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.stopped:
            self._transport.resumeProducing()

    def detach(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None and getattr(transport, "producer", None) is self:
            transport.unregisterProducer()
        self._writable.set()
