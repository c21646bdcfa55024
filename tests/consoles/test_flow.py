"""Flow control against Twisted's real producer/consumer logic (abstract.FileDescriptor), no sockets.

The regression of issue 14: a console pump paused by Twisted waited for a
resume that Twisted delivers only to the producer registered when the buffer
drains. Other code on the connection empties or takes that slot (autobahn's
dropConnection, Twisted's HTTPChannel.loseConnection call unregisterProducer
on whatever is registered), so the resume went elsewhere and the pump never
moved again while the connection stayed open.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
from twisted.internet import abstract

from ovmweb.consoles.flow import WriteFlow


class MemoryTransport(abstract.FileDescriptor):
    """A FileDescriptor whose socket takes ``budget`` bytes per doWrite; nothing touches a reactor."""

    def __init__(self):
        super().__init__(reactor=object())
        self.connected = 1
        self.budget = 0
        self.sent = 0

    def startWriting(self):
        pass

    def stopWriting(self):
        pass

    def startReading(self):
        pass

    def stopReading(self):
        pass

    def writeSomeData(self, data):
        taken = min(len(data), self.budget)
        self.budget -= taken
        self.sent += taken
        return taken

    def drain(self):
        self.budget = 1 << 30
        self.doWrite()


class Protocol:
    """Enough of daphne's WebSocket protocol for WriteFlow to find the transport."""

    def __init__(self, transport):
        self.transport = transport

    def sendMessage(self, data, binary):
        self.transport.write(data)


class OtherProducer:
    resumed = 0

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        self.resumed += 1

    def stopProducing(self):
        pass


def _handle_reply(protocol, message):
    protocol.sendMessage(message["bytes"], True)


def _paused_flow():
    transport = MemoryTransport()
    protocol = Protocol(transport)
    flow = WriteFlow(functools.partial(_handle_reply, protocol))
    assert flow.active and transport.producer is flow
    transport.write(b"x" * (transport.bufferSize + 1))  # over the high-water mark: Twisted pauses the flow
    assert not flow._writable.is_set()
    return transport, flow


async def _writable_within(flow, seconds=10) -> bool:
    # A bound, not a measurement: the old code waited here forever.
    try:
        await asyncio.wait_for(flow.wait_writable(), seconds)
    except TimeoutError:
        return False
    return True


def test_drain_resumes_the_registered_flow():
    async def run():
        transport, flow = _paused_flow()
        transport.drain()
        return await _writable_within(flow)

    assert asyncio.run(run())


@pytest.mark.parametrize("how", ["unregistered", "replaced"])
def test_flow_resumes_after_losing_its_producer_slot_while_paused(how):
    """Fails before the fix: the drain's resumeProducing goes to the slot's new holder (or nobody)."""

    async def run():
        transport, flow = _paused_flow()
        transport.unregisterProducer()
        other = OtherProducer()
        if how == "replaced":
            transport.registerProducer(other, True)
        transport.drain()
        assert transport.sent > transport.bufferSize and not transport.dataBuffer
        ok = await _writable_within(flow)
        return ok, flow, transport, other

    ok, flow, transport, other = asyncio.run(run())
    assert ok
    assert flow.lost_registrations == 1
    if how == "unregistered":
        assert transport.producer is flow  # it took the free slot back, so later pauses reach it again
    else:
        assert other.resumed == 1 and transport.producer is other


def test_flow_re_registered_while_still_full_resumes_on_the_next_drain():
    async def run():
        transport, flow = _paused_flow()
        transport.unregisterProducer()
        transport.producerPaused = False  # Twisted resets this when it resumes another producer
        waiter = asyncio.ensure_future(flow.wait_writable())
        await asyncio.sleep(0.6)  # one re-check: the flow takes the slot back, still paused
        assert transport.producer is flow and not waiter.done()
        transport.drain()
        await asyncio.wait_for(waiter, 10)
        return flow

    flow = asyncio.run(run())
    assert not flow.paused


def test_flow_unregistered_by_a_closing_connection_stops():
    async def run():
        transport, flow = _paused_flow()
        transport.unregisterProducer()
        transport.disconnecting = True
        return await _writable_within(flow), flow

    ok, flow = asyncio.run(run())
    assert ok and flow.stopped


def test_force_resume_retakes_a_free_slot():
    async def run():
        transport, flow = _paused_flow()
        transport.unregisterProducer()
        transport.drain()
        flow.force_resume()
        return transport, flow

    transport, flow = asyncio.run(run())
    assert transport.producer is flow and not flow.paused
