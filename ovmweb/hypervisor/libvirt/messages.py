"""Guest messages: key/value pairs to the guest agent over the domain's virtio-serial channel.

The protocol is one line per request and per answer (guest/ovmweb-guest-agent, guest/README.md):
``SET <rid> <key> <base64 value> [log]`` -> ``ACK <rid> <key> ok|ignored`` or ``ERR <rid> <key> <reason>``,
after a ``PING <rid>`` that proves the agent listens. ``log`` lets the agent write the value to
its log; an unlogged or hidden value never gets there. libvirt's channel
stream carries it, so it works over any transport the connection uses.

A message is delivered only once the agent acknowledged it. No answer to the PING: no agent
listens and nothing was set (``OperationFailed``); no answer to a SET: the guest may still
apply it later (``AgentTimeout``).
"""

from __future__ import annotations

import base64
import time
import uuid as uuidlib
from collections.abc import Collection

import libvirt

from ovmweb.errors import OperationFailed

from .. import xml as xmlbuild
from ..base import AgentTimeout
from .connection import Connection, errors

_AGAIN = -2  # a non-blocking stream's "would block"


def _request_id() -> str:
    return uuidlib.uuid4().hex[:8]


class _Channel:
    """A non-blocking libvirt stream spoken to one line at a time."""

    def __init__(self, stream, timeout: float):
        self.stream = stream
        self.timeout = timeout
        self.buffer = bytearray()

    def send_line(self, frame: str) -> None:
        data = (frame + "\n").encode()
        while data:
            sent = self.stream.send(data)
            if sent == _AGAIN:
                time.sleep(0.01)
                continue
            data = data[sent:]

    def _answer_in_buffer(self, rid: str) -> list[str] | None:
        while b"\n" in self.buffer:
            line, _, rest = bytes(self.buffer).partition(b"\n")
            self.buffer[:] = rest
            parts = line.decode(errors="replace").split()
            if len(parts) >= 2 and parts[1] == rid:
                return parts
            # A line for an earlier request (answered after its client left): stale.
        return None

    def _receive(self) -> None:
        chunk = self.stream.recv(4096)
        if chunk == _AGAIN:
            time.sleep(0.02)
            return
        if not chunk:
            raise OperationFailed("the messages channel closed (is the VM running?)")
        self.buffer.extend(chunk)

    def request(self, frame: str, rid: str, *, what: str = "the request") -> list[str]:
        """Send ``frame`` and return the words of the answer to ``rid``."""
        self.send_line(frame)
        deadline = time.monotonic() + self.timeout
        while True:
            parts = self._answer_in_buffer(rid)
            if parts is not None:
                return parts
            if time.monotonic() > deadline:
                raise AgentTimeout(f"the guest agent did not acknowledge {what} within {self.timeout:g} s")
            self._receive()

    def close(self) -> None:
        try:
            self.stream.finish()
        except libvirt.libvirtError:
            try:
                self.stream.abort()
            except libvirt.libvirtError:
                pass


def _ping(channel: _Channel) -> None:
    rid = _request_id()
    try:
        channel.request(f"PING {rid}", rid, what="the ping")
    except AgentTimeout:
        # Nothing was set yet: the message failed, it is not "maybe applied later".
        raise OperationFailed(
            f"no guest agent answered on the channel {xmlbuild.MESSAGES_CHANNEL} within {channel.timeout:g} s "
            "(is ovmweb-guest-agent installed and running in the guest? see guest/README.md)"
        ) from None


def _exchange(channel: _Channel, messages: list[tuple[str, str]], logged: Collection[str] = ()) -> dict[str, str]:
    _ping(channel)
    results = {}
    for key, value in messages:
        rid = _request_id()
        b64 = base64.b64encode(value.encode()).decode()
        flag = " log" if key in logged else ""
        parts = channel.request(f"SET {rid} {key} {b64}{flag}", rid, what=key)
        if parts[0] != "ACK":
            raise OperationFailed(f"the guest refused {key}: {' '.join(parts[3:])}")
        results[key] = parts[3] if len(parts) > 3 else "ok"
    return results


class MessagesMixin(Connection):
    def send_messages(
        self, uuid: str, messages: list[tuple[str, str]], *, timeout: float = 5.0, logged: Collection[str] = ()
    ) -> dict[str, str]:
        """Talk to the guest agent through libvirt's channel stream (works over any transport)."""
        dom = self._domain(uuid)
        with errors(f"opening the messages channel of {uuid}"):
            stream = self._conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            dom.openChannel(xmlbuild.MESSAGES_CHANNEL, stream, libvirt.VIR_DOMAIN_CHANNEL_FORCE)
        channel = _Channel(stream, timeout)
        try:
            with errors(f"messages to {uuid}"):
                return _exchange(channel, messages, logged)
        finally:
            channel.close()
