"""WebSocket consumers bridging a browser to a VM's VNC or serial console.

The path is browser -> WebSocket -> this consumer -> SSH direct-tcpip channel
on the server's shared transport (or a TCP socket for the local server) ->
QEMU's console port on 127.0.0.1. A connection is accepted only for an
authenticated session, from this site's own origin, presenting a console
ticket for this user, this VM and this console kind.

Data frames take a fast path: no database work per frame (Channels would run
``close_old_connections`` in a thread before each one), 1 MiB reads, and
reads from the console only while the WebSocket side keeps up (see flow.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404

from ovmweb.audit import services as audit
from ovmweb.consoles import services
from ovmweb.consoles.flow import WriteFlow
from ovmweb.consoles.models import ConsoleKind
from ovmweb.consoles.rfb import RfbInputFilter, RfbViolation
from ovmweb.consoles.watchdog import CHECK_INTERVAL, Watchdog
from ovmweb.core.websocket import origin_allowed
from ovmweb.errors import Conflict, ConnectionFailed
from ovmweb.inventory.choices import VmStatus
from ovmweb.tunnels import aiossh, openssh, pool, streams

logger = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
# Input queued for a console that is slower than the browser: stop reading the browser above
# INBOX_PAUSE bytes; end the session above INBOX_LIMIT (reached only where the ASGI server
# cannot stop reading, daphne can); wait up to FLUSH_TIMEOUT for queued input at a disconnect.
INBOX_PAUSE = 1024 * 1024
INBOX_LIMIT = 64 * 1024 * 1024
FLUSH_TIMEOUT = 30
LIVE_GROUP = "live"

# Close codes (4000-4999 are the application's); the console pages show them.
CLOSE_NORMAL = 1000
CLOSE_VM_STOPPED = 4000
CLOSE_LOGGED_OUT = 4001
CLOSE_LIFETIME = 4002
CLOSE_PROTOCOL = 4003
CLOSE_UNAVAILABLE = 4004
# The VM now runs on another server (migrated): the page reconnects at once, through a new ticket to it.
CLOSE_VM_MOVED = 4005


def user_group(user_id: int) -> str:
    return f"console-user-{user_id}"


class Refused(Exception):
    pass


class ConsoleConsumer(AsyncWebsocketConsumer):
    kind: str = ""

    stream: streams.ConsoleStream | None = None
    session = None
    ticket = None
    _pump_task: asyncio.Task | None = None
    _lifetime_timer: asyncio.TimerHandle | None = None
    _watchdog_timer: asyncio.TimerHandle | None = None
    watchdog: Watchdog | None = None
    _rfb_filter: RfbInputFilter | None = None
    _closing = False
    # The session's audit record, and the bytes each way (an integer add per frame; written at the end).
    _audit_id: int | None = None
    bytes_to_console = 0
    bytes_from_console = 0
    # Input waiting for the console (see websocket_receive), and the writer task that sends it.
    _writer_task: asyncio.Task | None = None
    _inbox_bytes = 0
    _input_paused = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._inbox: collections.deque[bytes] = collections.deque()
        self._inbox_ready = asyncio.Event()
        self._drained = asyncio.Event()

    async def dispatch(self, message):
        # Console frames touch no database; skip Channels' per-frame
        # close_old_connections round trip through a thread.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    # --- opening ---------------------------------------------------------

    async def websocket_connect(self, message):
        try:
            await self._open()
        except Refused as exc:
            # Never log the query string: it carries the ticket.
            logger.info(
                "console %s of VM %s refused: %s",
                self.kind,
                self.scope.get("url_route", {}).get("kwargs", {}).get("vm_id"),
                exc,
            )
            await self._teardown()
            await self.close()  # before accept: the handshake is answered 403
            return
        await self.accept()
        loop = asyncio.get_running_loop()
        self.flow = WriteFlow(self.base_send)
        self._pump_task = loop.create_task(self._pump())
        self._lifetime_timer = loop.call_later(
            settings.OVMWEB_CONSOLE_SESSION_LIFETIME, lambda: loop.create_task(self._end(CLOSE_LIFETIME))
        )
        self.watchdog = Watchdog(self, name=f"{self.kind} of VM {self.ticket.vm_id}")
        self._watchdog_timer = loop.call_later(CHECK_INTERVAL, self._watch)

    async def _open(self) -> None:
        if not origin_allowed(self.scope):
            raise Refused("origin not allowed")
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            raise Refused("no authenticated session")
        try:
            vm_id = int(self.scope["url_route"]["kwargs"]["vm_id"])
        except (KeyError, TypeError, ValueError):
            raise Refused("bad VM id") from None
        query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
        token = (query.get("ticket") or [""])[0]
        try:
            # Not thread-sensitive: redemptions of many consoles opening at once then run side by
            # side instead of queueing on Django's one sync thread; past daphne's 5 s opening
            # handshake timeout a queued connection is dropped (seen: 20-136 of 200 at once).
            self.ticket = await database_sync_to_async(
                services.ticket_redeem, thread_sensitive=False, executor=streams.openers
            )(token=token, user=user, vm_id=vm_id, kind=self.kind)
        except (PermissionDenied, Http404, Conflict) as exc:
            raise Refused(type(exc).__name__) from None
        try:
            self.session = services.session_open(
                user_id=user.pk, vm_id=vm_id, read_only=self.ticket.read_only, username=user.get_username()
            )
        except services.ConsoleLimitReached as exc:
            raise Refused(str(exc)) from None
        server, port = services.console_target(self.ticket)
        loop = asyncio.get_running_loop()
        try:
            if settings.OVMWEB_CONSOLE_SSH == "openssh" and server.transport != "local":
                # The server's OpenSSH master does the SSH; this loop reads and writes socket pairs.
                self.stream = await openssh.open_console_stream(server, port)
            elif settings.OVMWEB_CONSOLE_SSH == "asyncssh" and server.transport != "local":
                # On this loop: asyncssh's connection, no thread between sshd and the WebSocket.
                self.stream = await aiossh.open_console_stream(server, port)
            else:
                raw = await loop.run_in_executor(streams.openers, pool.open_console_stream, server, port)
                self.stream = streams.wrap(raw, loop)
        except ConnectionFailed as exc:
            raise Refused(f"console unreachable: {exc}") from None
        if self.ticket.read_only and self.kind == ConsoleKind.VNC:
            self._rfb_filter = RfbInputFilter()
        await self.channel_layer.group_add(user_group(user.pk), self.channel_name)
        await self.channel_layer.group_add(LIVE_GROUP, self.channel_name)
        self.groups = [user_group(user.pk), LIVE_GROUP]
        self._audit_id = await database_sync_to_async(
            audit.console_session_start, thread_sensitive=False, executor=streams.openers
        )(
            user_id=user.pk,
            vm=self.ticket.vm,
            kind=self.kind,
            read_only=self.ticket.read_only,
            address=(self.scope.get("client") or ("",))[0] or "",
        )

    # --- watchdog (see watchdog.py) ------------------------------------------

    def _watch(self) -> None:
        if self._closing or self.stream is None:
            return
        try:
            self.watchdog.check()
        finally:
            if not self._closing:
                self._watchdog_timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL, self._watch)

    def progress(self) -> tuple:
        stream = self.stream
        inside = stream.progress() if stream is not None else ()
        return (self.bytes_from_console, self.bytes_to_console, self.flow.buffered(), *inside)

    def waiting_for(self) -> str | None:
        """What this proxy should be moving now and is not (None: nothing is owed)."""
        stream, flow = self.stream, self.flow
        if stream is None:
            return None
        if flow.waiting and flow.resume_owed():
            return "pump paused with the server's buffer drained"
        if stream.waiting and not flow.waiting and stream.data_ready():
            return "console data ready, pump not reading"
        if stream.writes_in_flight and stream.window_open():
            return "write to the console pending with its window open"
        return None

    def describe(self) -> dict:
        return {
            "browser_side": self.flow.describe(),
            "console_side": self.stream.describe() if self.stream is not None else None,
            "bytes_from_console": self.bytes_from_console,
            "bytes_to_console": self.bytes_to_console,
        }

    def recover(self) -> None:
        self.flow.force_resume()
        if self.stream is not None:
            self.stream.wake()

    def give_up(self) -> None:
        asyncio.get_running_loop().create_task(self._end(CLOSE_UNAVAILABLE))

    # --- console -> browser ------------------------------------------------

    async def _pump(self) -> None:
        stream, flow = self.stream, self.flow
        send = self.base_send
        try:
            while True:
                data = stream.read_nowait(READ_SIZE)
                if data is None:
                    await stream.wait_readable()
                    continue
                if not data:
                    break
                # The next chunk is already read; hand it over once the last one has left.
                await flow.wait_writable()
                if flow.stopped:
                    return
                await send({"type": "websocket.send", "bytes": data})
                self.bytes_from_console += len(data)
            # End of the console stream: everything read has been handed to the
            # server; let it leave before the close frame queues behind it.
            await flow.wait_writable()
        except (OSError, EOFError) as exc:
            logger.info("console %s stream failed: %s", self.kind, exc)
        except Exception:
            # Anything else would end this task silently and leave the browser
            # connected to a console that never sends again: close it, so the
            # page says so (and reconnects), and leave the traceback in the log.
            logger.exception("console %s of VM %s failed", self.kind, self.ticket.vm_id)
            await self._end(CLOSE_UNAVAILABLE, from_pump=True)
            return
        await self._end(CLOSE_NORMAL, from_pump=True)

    # --- browser -> console ------------------------------------------------
    #
    # Input goes to the console in order, but never by waiting in the consumer's message loop:
    # a console that stops taking input (a hung guest, a full SSH window) would otherwise hold
    # every later message (the user's logout, the VM's stop, the browser's disconnect) behind
    # that write. A keystroke that can leave at once is sent in place; anything else queues
    # for the session's writer task, and past INBOX_PAUSE queued bytes the browser side stops
    # being read (Twisted's transport) until the console catches up.

    async def websocket_receive(self, message):
        stream = self.stream
        if stream is None or self._closing:
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode("utf-8")
        if self.ticket.read_only:
            if self._rfb_filter is None:
                return  # a read-only serial console: input is dropped
            try:
                data = self._rfb_filter.feed(data)
            except RfbViolation as exc:
                logger.info("read-only VNC console closed: %s", exc)
                await self._end(CLOSE_PROTOCOL)
                return
        if not data:
            return
        self.bytes_to_console += len(data)
        if not self._inbox:
            try:
                sent = stream.send_now(data)
            except (OSError, EOFError) as exc:
                logger.info("console %s write failed: %s", self.kind, exc)
                await self._end(CLOSE_UNAVAILABLE)
                return
            if sent == len(data):
                return
            data = data[sent:]
        await self._queue_input(data)

    async def _queue_input(self, data: bytes) -> None:
        if self._inbox_bytes + len(data) > INBOX_LIMIT:
            logger.warning(
                "console %s of VM %s closed: %d bytes of input queued for a console that does not take them",
                self.kind,
                self.ticket.vm_id,
                self._inbox_bytes,
            )
            await self._end(CLOSE_UNAVAILABLE)
            return
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        self._drained.clear()
        if self._inbox_bytes > INBOX_PAUSE and not self._input_paused:
            self._input_paused = True
            self.flow.pause_reading()
        if self._writer_task is None:
            self._writer_task = asyncio.get_running_loop().create_task(self._writer())
        self._inbox_ready.set()

    async def _writer(self) -> None:
        inbox, stream = self._inbox, self.stream
        try:
            while True:
                if not inbox:
                    self._drained.set()
                    self._inbox_ready.clear()
                    await self._inbox_ready.wait()
                    continue
                data = inbox[0]
                await stream.write(data)
                inbox.popleft()  # only now: an empty inbox means nothing is in flight either
                self._inbox_bytes -= len(data)
                if self._input_paused and self._inbox_bytes <= INBOX_PAUSE // 2:
                    self._input_paused = False
                    self.flow.resume_reading()
        except (OSError, EOFError) as exc:
            if not self._closing:
                logger.info("console %s write failed: %s", self.kind, exc)
                await self._end(CLOSE_UNAVAILABLE)

    async def _flush_input(self) -> None:
        """The browser ended its side: what it sent still reaches the console (bounded wait)."""
        if self._inbox and self._writer_task is not None:
            try:
                await asyncio.wait_for(self._drained.wait(), FLUSH_TIMEOUT)
            except TimeoutError:
                logger.info("console %s: %d bytes of input not delivered at close", self.kind, self._inbox_bytes)

    # --- endings -----------------------------------------------------------

    async def console_close(self, event):
        """Group message: the session's user logged out (or an administrator closed it)."""
        await self._end(event.get("code", CLOSE_LOGGED_OUT))

    async def live_update(self, event):
        if event.get("topic") != "vm" or self.ticket is None:
            return
        payload = event.get("payload") or {}
        if payload.get("id") != self.ticket.vm_id:
            return
        status = payload.get("status")
        moved = "server_id" in payload and payload["server_id"] != self.ticket.vm.server_id
        if status in (VmStatus.STOPPED, VmStatus.TEMPLATE):
            await self._end(CLOSE_VM_STOPPED)
        elif moved:
            await self._end(CLOSE_VM_MOVED)

    async def _end(self, code: int, *, from_pump: bool = False) -> None:
        """Close both sides once: the console stream and the WebSocket."""
        if self._closing:
            return
        self._closing = True
        await self._teardown(from_pump=from_pump)
        await self.close(code=code)

    async def _teardown(self, *, from_pump: bool = False) -> None:
        for timer in (self._lifetime_timer, self._watchdog_timer):
            if timer is not None:
                timer.cancel()
        self._lifetime_timer = self._watchdog_timer = None
        task, self._pump_task = self._pump_task, None
        if from_pump:
            task = None
        writer, self._writer_task = self._writer_task, None
        for job in (task, writer):
            if job is not None and job is not asyncio.current_task():
                job.cancel()
                try:
                    await job
                except (asyncio.CancelledError, Exception):
                    pass
        self._inbox.clear()
        self._inbox_bytes = 0
        stream, self.stream = self.stream, None
        if stream is not None:
            # close() unregisters the fd from the loop before closing the channel.
            await stream.close()
        if getattr(self, "flow", None) is not None:
            self.flow.detach()
        session, self.session = self.session, None
        if session is not None:
            services.session_close(session)
        await self._audit_end()

    async def _audit_end(self) -> None:
        record_id, self._audit_id = self._audit_id, None
        if record_id is None:
            return
        try:
            await database_sync_to_async(audit.console_session_end, thread_sensitive=False)(
                record_id=record_id, bytes_to_console=self.bytes_to_console, bytes_from_console=self.bytes_from_console
            )
        except Exception:  # closing the console must not fail on the audit trail; the start row stays
            logger.exception("could not record the end of console session %s", record_id)

    async def websocket_disconnect(self, message):
        if not self._closing:
            await self._flush_input()
        self._closing = True
        await self._teardown()
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        raise StopConsumer()


class VncConsoleConsumer(ConsoleConsumer):
    kind = ConsoleKind.VNC


class SerialConsoleConsumer(ConsoleConsumer):
    kind = ConsoleKind.SERIAL
