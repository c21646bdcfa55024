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

The stall this module once had (issue 14): Twisted delivers ``resumeProducing``
only to the producer registered *when the buffer drains*. A transport keeps
one producer slot, and other code on the same connection empties it (autobahn's
``dropConnection`` and Twisted's ``HTTPChannel.loseConnection`` call
``unregisterProducer`` on whatever is registered; ``registerProducer`` of
someone else replaces it). A flow paused at that moment was never resumed:
the pump waited forever on a connection that stayed open. So a paused flow no
longer trusts the callback alone: it re-checks every ``RECHECK_INTERVAL`` that
it still holds the slot, and when it has lost it decides from the transport's
own buffer (re-registering itself when the slot is free).
"""

from __future__ import annotations

import asyncio
import functools
import logging

logger = logging.getLogger(__name__)

# Seconds for the client to answer our close frame; it is sent after the data
# has left Twisted's buffer, so this covers only the kernel's socket buffers.
CLOSE_HANDSHAKE_TIMEOUT = 30
# While paused, how often the flow checks that a resume can still reach it.
# Only paused flows pay for it; the callback still wakes them at once.
RECHECK_INTERVAL = 0.5


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


def buffered_bytes(transport) -> int:
    """Bytes waiting in a Twisted FileDescriptor's user-space write buffer (0 if it has none)."""
    try:
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    except (AttributeError, TypeError):
        return 0


class WriteFlow:
    """Implements Twisted's IPushProducer; all callbacks arrive on the asyncio loop (asyncio reactor).

    Invariant: ``wait_writable`` returns once the transport's buffer is at or
    below its high-water mark, the connection is gone, or ``force_resume`` is
    called, whoever holds the transport's producer slot meanwhile.
    """

    def __init__(self, send):
        self._writable = asyncio.Event()
        self._writable.set()
        self.stopped = False
        self.waiting = False  # the pump is inside wait_writable (the watchdog reads it)
        self.lost_registrations = 0
        self._lost_to = None  # the producer last seen in our slot, so a loss is logged once
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

    @property
    def paused(self) -> bool:
        return not self._writable.is_set()

    # IPushProducer
    def pauseProducing(self) -> None:
        if not self.stopped:
            self._writable.clear()

    def resumeProducing(self) -> None:
        self._writable.set()

    def stopProducing(self) -> None:
        self.stopped = True
        self._writable.set()

    # state of the server side, for the wait and the watchdog
    def buffered(self) -> int:
        return buffered_bytes(self._transport) if self._transport is not None else 0

    def _high_water(self) -> int:
        return getattr(self._transport, "bufferSize", 65536)

    def resume_owed(self) -> bool:
        """Paused, yet the transport's buffer is below its high-water mark: a resume should have come."""
        return self.paused and self._transport is not None and self.buffered() <= self._high_water()

    def describe(self) -> dict:
        transport = self._transport
        return {
            "paused": self.paused,
            "stopped": self.stopped,
            "waiting": self.waiting,
            "registered": transport is not None and getattr(transport, "producer", None) is self,
            "transport_producer": type(getattr(transport, "producer", None)).__name__ if transport else None,
            "buffered": self.buffered(),
            "disconnecting": bool(getattr(transport, "disconnecting", False)) if transport else None,
            "lost_registrations": self.lost_registrations,
        }

    async def wait_writable(self) -> None:
        """Return once the server's write buffer is below its high-water mark (or the connection is gone)."""
        if self._writable.is_set():
            return
        self.waiting = True
        try:
            while not self._writable.is_set():
                self._check_registration()
                if self._writable.is_set():
                    return
                try:
                    await asyncio.wait_for(self._writable.wait(), RECHECK_INTERVAL)
                except TimeoutError:
                    continue
        finally:
            self.waiting = False

    def _check_registration(self) -> None:
        """If the producer slot was emptied or taken while paused, stop relying on Twisted's resume."""
        transport = self._transport
        if transport is None or getattr(transport, "producer", None) is self:
            return
        if not getattr(transport, "connected", True) or getattr(transport, "disconnecting", False):
            # Unregistered by a close in progress: nothing more will be sent on this connection.
            self.stopProducing()
            return
        holder = getattr(transport, "producer", None)
        if holder is not self._lost_to or holder is None:
            self._lost_to = holder
            self.lost_registrations += 1
            logger.warning(
                "console flow lost its producer registration while paused (slot now %s, %d bytes buffered); re-arming",
                type(holder).__name__,
                self.buffered(),
            )
        if holder is None:
            transport.registerProducer(self, True)
            self._lost_to = None
        self._rearm()

    def _rearm(self) -> None:
        """Resume now if the buffer allows, else make sure the next drain resumes this flow."""
        transport = self._transport
        if transport is None or self.buffered() <= self._high_water():
            self._writable.set()
        elif getattr(transport, "producer", None) is self:
            # Twisted resumes a streaming producer on drain only if it paused it itself.
            transport.producerPaused = True

    def force_resume(self) -> None:
        """The watchdog's recovery: re-take the producer slot if free and re-decide from the buffer."""
        transport = self._transport
        if transport is not None and getattr(transport, "producer", None) is None and not self.stopped:
            transport.registerProducer(self, True)
        self._rearm()

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
