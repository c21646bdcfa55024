"""A read-only filter for the client side of an RFB (VNC) stream.

A user with view permission only may watch a VM's screen but not touch it:
the client's handshake and its screen-update requests pass, while keyboard,
pointer, clipboard, desktop-resize and power (xvp) messages are dropped.
Anything not understood closes the console: failing closed is the point.
"""

from __future__ import annotations

import struct


class RfbViolation(Exception):
    """The client sent something the filter cannot prove harmless."""


# Fixed-length client messages: type -> (total length, forwarded?)
_FIXED = {
    0: (20, True),  # SetPixelFormat
    3: (10, True),  # FramebufferUpdateRequest
    4: (8, False),  # KeyEvent
    5: (6, False),  # PointerEvent
    150: (10, True),  # EnableContinuousUpdates
    251: (4, False),  # xvp (shutdown/reboot/reset)
}


class RfbInputFilter:
    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = "version"

    def feed(self, data: bytes) -> bytes:
        """Consume client bytes; return those to forward to the server."""
        self._buffer += data
        out = bytearray()
        while True:
            step = self._step()
            if step is None:
                return bytes(out)
            length, forward = step
            if forward:
                out += self._buffer[:length]
            del self._buffer[:length]

    def _step(self) -> tuple[int, bool] | None:  # noqa: C901
        buf = self._buffer
        if self._state == "version":
            if len(buf) < 12:
                return None
            if not buf.startswith(b"RFB 003.00") or buf[10:11] not in (b"7", b"8"):
                raise RfbViolation("only RFB 3.7/3.8 clients are supported read-only")
            self._state = "security"
            return 12, True
        if self._state == "security":
            if not buf:
                return None
            if buf[0] == 1:  # None
                self._state = "init"
                return 1, True
            if buf[0] == 2:  # VNC authentication: 16-byte response follows
                if len(buf) < 17:
                    return None
                self._state = "init"
                return 17, True
            raise RfbViolation(f"security type {buf[0]} not supported read-only")
        if self._state == "init":
            if not buf:
                return None
            self._state = "normal"
            return 1, True  # ClientInit (shared flag)
        return self._message()

    def _message(self) -> tuple[int, bool] | None:  # noqa: C901
        buf = self._buffer
        if not buf:
            return None
        kind = buf[0]
        if kind in _FIXED:
            length, forward = _FIXED[kind]
            return (length, forward) if len(buf) >= length else None
        if kind == 2:  # SetEncodings
            if len(buf) < 4:
                return None
            (count,) = struct.unpack_from(">H", buf, 2)
            length = 4 + 4 * count
            return (length, True) if len(buf) >= length else None
        if kind == 6:  # ClientCutText; a negative length is the extended clipboard format
            if len(buf) < 8:
                return None
            (size,) = struct.unpack_from(">i", buf, 4)
            length = 8 + abs(size)
            return (length, False) if len(buf) >= length else None
        if kind == 248:  # ClientFence
            if len(buf) < 9:
                return None
            length = 9 + buf[8]
            return (length, True) if len(buf) >= length else None
        if kind == 252:  # SetDesktopSize
            if len(buf) < 8:
                return None
            length = 8 + 16 * buf[6]
            return (length, False) if len(buf) >= length else None
        if kind == 255:  # QEMU client messages
            if len(buf) < 2:
                return None
            if buf[1] == 0:  # extended key event
                return (12, False) if len(buf) >= 12 else None
            raise RfbViolation(f"QEMU client message {buf[1]} not supported read-only")
        raise RfbViolation(f"client message type {kind} not supported read-only")
