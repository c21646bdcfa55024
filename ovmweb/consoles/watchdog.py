"""The console watchdog: a session with data waiting on one side and no progress for 5 s is stalled.

The flow-control fix (flow.py) removes the stall's known cause; this is the
net under it. Every ``CHECK_INTERVAL`` each session is asked two things: is
something waiting that this proxy should be moving (a resume owed to a paused
pump, console data the pump is not reading, a write with the SSH window open),
and has anything moved since the last look (bytes either way, the server's
write buffer draining). A peer that does not read is not a stall: its bytes
sit above the server buffer's high-water mark, which no resume is owed for.

A stall is logged once with the state of both sides, then recovered: the
flow is re-armed and the reader woken. If the session still does not move
``STALL_SECONDS`` later it is closed, so the page reconnects instead of
showing a frozen console.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

logger = logging.getLogger(__name__)

STALL_SECONDS = 5.0
CHECK_INTERVAL = 1.0


class Watched(Protocol):
    def progress(self) -> tuple: ...

    def waiting_for(self) -> str | None: ...

    def describe(self) -> dict: ...

    def recover(self) -> None: ...

    def give_up(self) -> None: ...


class Watchdog:
    """Decides from successive ``check`` calls; holds no timer itself (the consumer schedules it)."""

    def __init__(self, session: Watched, *, name: str, stall_seconds: float = STALL_SECONDS, clock=time.monotonic):
        self.session = session
        self.name = name
        self.stall_seconds = stall_seconds
        self.clock = clock
        self.stalls = 0
        self._last_progress = session.progress()
        self._still_since = clock()
        self._recovered_at: float | None = None

    def check(self) -> str | None:
        """One look; returns "recovered" or "closed" when it acted, None otherwise."""
        now = self.clock()
        progress = self.session.progress()
        waiting = self.session.waiting_for()
        if progress != self._last_progress or waiting is None:
            self._last_progress = progress
            self._still_since = now
            self._recovered_at = None
            return None
        if now - self._still_since < self.stall_seconds:
            return None
        if self._recovered_at is None:
            self.stalls += 1
            logger.warning(
                "console %s stalled: %s, no progress for %.1f s; state %s; recovering",
                self.name,
                waiting,
                now - self._still_since,
                self.session.describe(),
            )
            self._recovered_at = now
            self.session.recover()
            return "recovered"
        if now - self._recovered_at >= self.stall_seconds:
            logger.warning(
                "console %s still stalled after recovery (%s); closing it; state %s",
                self.name,
                waiting,
                self.session.describe(),
            )
            self.session.give_up()
            self._recovered_at = now
            return "closed"
        return None
