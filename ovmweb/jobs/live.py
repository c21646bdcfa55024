"""Live updates: every status change is pushed to channel-layer group "live".

Browsers listen through the `/ws/live/` consumer. Messages are sent only after
the surrounding transaction commits, so a browser never sees a state that was
rolled back.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import logging
import os
import threading
import time
import weakref
from typing import Any

from channels.layers import get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)

GROUP = "live"
MESSAGE_TYPE = "live.update"

# The event loop that serves the browsers' WebSockets in this process (daphne's
# loop under `runovmweb`). The in-memory channel layer is made of asyncio queues
# bound to that loop; waking them from another loop or thread is not
# thread-safe, so messages published from the worker thread are sent by a task
# on this loop instead.
_home_loop: asyncio.AbstractEventLoop | None = None
_home_lock = threading.Lock()


def set_home_loop(loop: asyncio.AbstractEventLoop | None) -> None:
    """Declare the event loop that owns this process's channel layer consumers."""
    global _home_loop
    with _home_lock:
        _home_loop = loop


def publish(topic: str, payload: dict[str, Any]) -> None:
    """Send `{"topic", "payload"}` to group "live" once the current transaction commits."""
    message = {"type": MESSAGE_TYPE, "topic": topic, "payload": payload}
    transaction.on_commit(lambda: send_now(message))


def send_now(message: dict[str, Any]) -> None:
    """Hand one message to the event loop that sends it; never raises (live updates are best effort)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        _deliver(layer, message)
    except Exception:  # a broken channel layer must not fail the job or the request that published
        logger.exception("live update could not be sent (topic %s)", message.get("topic"))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _deliver(layer, message: dict[str, Any]) -> None:
    loop = _running_loop() or _sync_to_async_loop() or _serving_loop() or _publisher_loop()
    _sender_for(loop).put(layer, message)


class _Sender:
    """One task per event loop sends the messages handed to it, in order.

    Publishers (the worker thread, views in sync_to_async threads) never wait
    for the channel layer: a message is appended to a buffer, and the loop is
    woken only when the buffer was empty (a burst of updates costs one wakeup).
    After sending, the task lingers LINGER seconds before it needs waking again:
    a worker running many short jobs publishes several messages per job, and one
    wakeup (a socket write and a thread switch) per message cost it more than the
    messages themselves. Nothing is dropped or reordered; updates wait at most LINGER.
    """

    LINGER = 0.02

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.pending = 0
        self._buffer: collections.deque = collections.deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._woken = False
        self._ready = asyncio.Event()
        loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        self.task = self.loop.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while True:
                with self._lock:
                    if not self._buffer:
                        self._woken = False
                        break
                    batch = list(self._buffer)
                    self._buffer.clear()
                for layer, message in batch:
                    try:
                        await layer.group_send(GROUP, message)
                    except Exception:  # best effort: the database holds the truth
                        logger.exception("live update could not be sent (topic %s)", message.get("topic"))
                    finally:
                        with self._lock:
                            self.pending -= 1
                            if self.pending <= 0:
                                self._idle.notify_all()
                # Linger (drain() cuts it short): what is published meanwhile needs no wakeup.
                try:
                    await asyncio.wait_for(self._ready.wait(), self.LINGER)
                except TimeoutError:
                    pass
                self._ready.clear()

    def put(self, layer, message: dict[str, Any]) -> None:
        with self._lock:
            self.pending += 1
            self._buffer.append((layer, message))
            wake, self._woken = not self._woken, True
        if wake:
            self.loop.call_soon_threadsafe(self._ready.set)

    def drain(self, timeout: float) -> bool:
        """Wait until every message handed over so far was sent (or timeout)."""
        with self._lock:
            if self.pending <= 0:
                return True
        self.loop.call_soon_threadsafe(self._ready.set)
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.pending > 0 and self.loop.is_running():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(min(left, 0.1))
            return self.pending <= 0


_senders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Sender] = weakref.WeakKeyDictionary()


def _forget_loops_after_fork() -> None:
    # A forked child (RQ's work horse) inherits the loop objects but not the
    # threads running them: messages handed to them would never be sent.
    global _publisher, _home_loop, _home_lock
    _publisher = None
    _home_loop = None
    _home_lock = threading.Lock()
    _senders.clear()


os.register_at_fork(after_in_child=_forget_loops_after_fork)


def flush(timeout: float = 5.0) -> bool:
    """Wait until the messages this process handed to its private publisher
    loop were sent. Runs at exit, so that a short-lived process (a management
    command, a shell) does not drop its last updates."""
    sender = _senders.get(_publisher) if _publisher is not None else None
    return sender.drain(timeout) if sender is not None else True


atexit.register(flush)


def _sender_for(loop: asyncio.AbstractEventLoop) -> _Sender:
    with _home_lock:
        sender = _senders.get(loop)
        if sender is None:
            sender = _senders[loop] = _Sender(loop)
        return sender


def _sync_to_async_loop() -> asyncio.AbstractEventLoop | None:
    """The loop that called us through sync_to_async (a view or consumer under daphne)."""
    from asgiref.sync import SyncToAsync

    local = SyncToAsync.threadlocal
    loop = getattr(local, "main_event_loop", None)
    if loop is not None and getattr(local, "main_event_loop_pid", None) == os.getpid() and loop.is_running():
        return loop
    return None


def _serving_loop() -> asyncio.AbstractEventLoop | None:
    home = _home_loop
    return home if home is not None and home.is_running() else None


_publisher: asyncio.AbstractEventLoop | None = None


def _publisher_loop() -> asyncio.AbstractEventLoop:
    """One private loop on a daemon thread for processes that serve no
    WebSockets (a separate worker publishing into Redis, tests): creating an
    event loop and a thread per message (what async_to_sync does here) costs
    milliseconds per message."""
    global _publisher
    with _home_lock:
        if _publisher is None or not _publisher.is_running():
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            threading.Thread(target=run, name="ovmweb-live-publisher", daemon=True).start()
            started.wait(5)
            _publisher = loop
        return _publisher


def _label(content_type_id: int | None) -> str | None:
    if content_type_id is None:
        return None
    from django.contrib.contenttypes.models import ContentType

    # get_for_id is served from ContentType's process-wide cache: no query per message.
    ct = ContentType.objects.get_for_id(content_type_id)
    return f"{ct.app_label}.{ct.model}"


def job_payload(job) -> dict[str, Any]:
    return {
        "id": job.pk,
        "summary": job.summary,
        "operation": job.operation,
        "status": job.status,
        "progress": job.progress,
        "parent_id": job.parent_id,
        # Whose job: its owner sees it on the live feed whatever it is about.
        "user_id": job.user_id,
        "target_type": _label(job.target_type_id),
        "target_id": job.target_id,
        "target_name": job.target_name,
        "error": job.error,
        "abort_requested": job.abort_requested,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def event_payload(event) -> dict[str, Any]:
    return {
        "id": event.pk,
        "severity": event.severity,
        "type": event.type,
        "text": event.text,
        "acknowledged": event.acknowledged,
        "object_type": _label(event.content_type_id),
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "job_id": event.job_id,
        "created_at": event.created_at.isoformat() if event.created_at else None,
    }


def layer_spans_processes() -> bool:
    """True when messages published here can reach consumers in other processes."""
    from channels.layers import InMemoryChannelLayer

    layer = get_channel_layer()
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


def warn_if_isolated(role: str) -> bool:
    """Warn loudly when this process runs jobs but its live updates cannot leave it.

    A separate worker with the in-memory channel layer would publish into a
    layer no browser listens to (DESIGN §1): job progress would never show.
    Returns True when the warning was given.
    """
    if layer_spans_processes():
        return False
    banner = "!" * 78
    logger.warning(
        "\n%s\n%s: the channel layer is in-memory, so job and VM updates published by this "
        "process reach NO browser. Set OVMWEB_REDIS_URL (channels-redis) for separate "
        "workers, or run the embedded worker inside `manage.py runovmweb`.\n%s",
        banner,
        role,
        banner,
    )
    return True
