"""A read-only filter for the client side of an RFB (VNC) stream.

A user with view permission only may watch a VM's screen but not touch it:
the client's handshake and its screen-update requests pass, while keyboard,
pointer, clipboard, desktop-resize and power (xvp) messages are dropped.
Anything not understood closes the console: failing closed is the point.

The ClientInit shared flag is forced to 1: a viewer must not ask QEMU for
exclusive access, which would disconnect every other console of the VM (QEMU
is also told to ignore the flag, ``sharePolicy='force-shared'`` in the domain
XML; this covers domains defined before that).

Memory stays bounded whatever the client declares: only the fixed part of a
message (at most ``HEADER_MAX`` bytes) is ever buffered. The variable part of
a forwarded message streams through as it arrives, and that of a dropped one
(a ClientCutText may declare 4 GiB) is skipped by counting its bytes.
"""

from __future__ import annotations

import struct


class RfbViolation(Exception):
    """The client sent something the filter cannot prove harmless."""


# The most bytes any step needs to decide a message's length (SetPixelFormat, 20).
HEADER_MAX = 20

# Fixed-length client messages: type -> (total length, forwarded?)
_FIXED = {
    0: (20, True),  # SetPixelFormat
    3: (10, True),  # FramebufferUpdateRequest
    4: (8, False),  # KeyEvent
    5: (6, False),  # PointerEvent
    150: (10, True),  # EnableContinuousUpdates
    251: (4, False),  # xvp (shutdown/reboot/reset)
}

SECURITY_NONE = 1
SECURITY_VNC_AUTH = 2

# A step returns None (more bytes needed) or (total length of the piece, forward it?).
Step = tuple[int, bool] | None


class RfbInputFilter:
    """Feed client bytes in any chunking; get back those the server may see.

    Invariant: ``len(self._buffer) <= HEADER_MAX``, and the buffer is empty
    while the body of a message is being passed or skipped.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "version"
        self._pass = 0  # bytes of a forwarded message still to come, sent on as they arrive
        self._skip = 0  # bytes of a dropped message still to come, counted and discarded
        self._states = {
            "version": self._version,
            "security": self._security,
            "init": self._client_init,
            "normal": self._message,
        }

    @property
    def buffered(self) -> int:
        """Bytes held back (an incomplete message header)."""
        return len(self._buffer)

    def feed(self, data: bytes) -> bytes:
        """Consume client bytes; return those to forward to the server."""
        out = bytearray()
        view = memoryview(data)
        while True:
            view = self._drain_body(view, out)
            if self._pass or self._skip:
                return bytes(out)  # the data ended inside a message body
            take = min(len(view), HEADER_MAX - len(self._buffer))
            self._buffer += view[:take]
            view = view[take:]
            step = self._states[self._state]() if self._buffer else None
            if step is None:
                if len(self._buffer) >= HEADER_MAX:
                    raise RfbViolation("client message header not understood")
                if not view:
                    return bytes(out)
                continue
            self._consume(*step, out)

    def _drain_body(self, view: memoryview, out: bytearray) -> memoryview:
        """Pass or skip what the current message body still owns of ``view``."""
        if self._pass:
            n = min(self._pass, len(view))
            out += view[:n]
            self._pass -= n
            return view[n:]
        if self._skip:
            n = min(self._skip, len(view))
            self._skip -= n
            return view[n:]
        return view

    def _consume(self, length: int, forward: bool, out: bytearray) -> None:
        """The buffer starts a piece ``length`` bytes long: emit or drop it, the rest as it comes."""
        have = min(length, len(self._buffer))
        if forward:
            out += self._buffer[:have]
        del self._buffer[:have]
        rest = length - have
        if forward:
            self._pass = rest
        else:
            self._skip = rest

    # --- handshake ---------------------------------------------------------

    def _version(self) -> Step:
        buf = self._buffer
        if len(buf) < 12:
            return None
        if not buf.startswith(b"RFB 003.00") or buf[10:11] not in (b"7", b"8"):
            raise RfbViolation("only RFB 3.7/3.8 clients are supported read-only")
        self._state = "security"
        return 12, True

    def _security(self) -> Step:
        kind = self._buffer[0]
        if kind == SECURITY_NONE:
            self._state = "init"
            return 1, True
        if kind == SECURITY_VNC_AUTH:  # a 16-byte response follows
            self._state = "init"
            return 17, True
        raise RfbViolation(f"security type {kind} not supported read-only")

    def _client_init(self) -> Step:
        # The shared flag: a viewer never takes the console from everyone else.
        self._buffer[0] = 1
        self._state = "normal"
        return 1, True

    # --- normal messages -----------------------------------------------------

    def _message(self) -> Step:
        kind = self._buffer[0]
        if kind in _FIXED:
            return _FIXED[kind]
        sizer = _VARIABLE.get(kind)
        if sizer is None:
            raise RfbViolation(f"client message type {kind} not supported read-only")
        return sizer(self._buffer)


def _set_encodings(buf: bytearray) -> Step:
    if len(buf) < 4:
        return None
    (count,) = struct.unpack_from(">H", buf, 2)
    return 4 + 4 * count, True


def _client_cut_text(buf: bytearray) -> Step:
    # A negative length is the extended clipboard format; either way it is dropped unread.
    if len(buf) < 8:
        return None
    (size,) = struct.unpack_from(">i", buf, 4)
    return 8 + abs(size), False


def _client_fence(buf: bytearray) -> Step:
    if len(buf) < 9:
        return None
    return 9 + buf[8], True


def _set_desktop_size(buf: bytearray) -> Step:
    if len(buf) < 8:
        return None
    return 8 + 16 * buf[6], False


def _qemu_message(buf: bytearray) -> Step:
    if len(buf) < 2:
        return None
    if buf[1] == 0:  # extended key event
        return 12, False
    raise RfbViolation(f"QEMU client message {buf[1]} not supported read-only")


# Variable-length client messages: type -> sizer of the whole message from its header.
_VARIABLE = {
    2: _set_encodings,
    6: _client_cut_text,
    248: _client_fence,
    252: _set_desktop_size,
    255: _qemu_message,
}
