"""Console byte streams (an SSH channel or a TCP socket) driven from an asyncio loop.

Nothing here waits on the event loop: reads happen only when the stream's file
descriptor says data (or end of stream) is there. paramiko's sends wait when
the SSH window is exhausted or a key exchange is in progress; a send that can
wait for neither (window open, no rekey, a small message: keystrokes, pointer
events) is done in place, every other one on a thread pool.
The descriptor is unregistered from the loop before the stream is closed: a
later stream reusing the same fd number would otherwise never be woken.

AsyncsshStream (OVMWEB_CONSOLE_SSH=asyncssh) has no descriptor: asyncssh runs
on the same loop and hands each decrypted packet to the stream's session,
which buffers it and wakes the reader.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from concurrent.futures import ThreadPoolExecutor

import asyncssh
import paramiko

# Sends to SSH channels block only while the remote window is exhausted; a
# pool of its own keeps one stalled console from starving Django's
# sync_to_async threads.
_writers = ThreadPoolExecutor(max_workers=64, thread_name_prefix="console-write")
# Opening a console waits a round trip to sshd (or a TCP connect): many consoles opening at
# once must not queue behind the loop's default executor (min(32, cores + 4) threads) past
# daphne's 5 s opening-handshake timeout.
openers = ThreadPoolExecutor(max_workers=32, thread_name_prefix="console-open")
# Largest message sent from the event loop itself: one SSH packet's worth, which
# the kernel's socket buffer takes at once. Bigger ones (pastes, uploads) take
# the thread hop; small ones would spend more time hopping than sending.
DIRECT_SEND_MAX = 32 * 1024


class ConsoleStream:
    """Common interface; ``read_nowait`` returns None when nothing is there, b"" at end of stream."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._fd: int | None = None
        self._wakeup: asyncio.Future | None = None
        self.closed = False
        self.writes_in_flight = 0

    @property
    def waiting(self) -> bool:
        """A reader is parked in ``wait_readable``."""
        return self._wakeup is not None

    def data_ready(self) -> bool:
        """Data (or the end of the stream) can be read now without waiting."""
        raise NotImplementedError

    def window_open(self) -> bool:
        """A write could make progress now (the remote side takes data); False when it cannot be told."""
        return False

    def progress(self) -> tuple:
        """Changes whenever bytes move inside the stream (a slow console taking input counts)."""
        return ()

    def describe(self) -> dict:
        return {"closed": self.closed, "reader_waiting": self.waiting, "writes_in_flight": self.writes_in_flight}

    def wake(self) -> None:
        """Wake a parked reader so it looks at the stream again (the watchdog's recovery)."""
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    def fileno(self) -> int:
        raise NotImplementedError

    def read_nowait(self, size: int) -> bytes | None:
        raise NotImplementedError

    async def write(self, data: bytes) -> None:
        self.writes_in_flight += 1
        try:
            await self._write(data)
        finally:
            self.writes_in_flight -= 1

    async def _write(self, data: bytes) -> None:
        raise NotImplementedError

    def write_would_block(self, size: int) -> bool:
        return False

    def send_now(self, data: bytes) -> int:
        """Send what can go without waiting (0 when nothing can); the caller queues the rest."""
        return 0

    async def _close(self) -> None:
        raise NotImplementedError

    async def wait_readable(self) -> None:
        future = self._loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        fd = self.fileno()
        self._loop.add_reader(fd, ready)
        self._fd = fd
        self._wakeup = future
        try:
            await future
        finally:
            self._wakeup = None
            self._unregister()

    def _unregister(self) -> None:
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None

    async def read(self, size: int) -> bytes:
        """Wait for data; b"" at end of stream."""
        while True:
            data = self.read_nowait(size)
            if data is not None:
                return data
            await self.wait_readable()

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._unregister()
        await self._close()


class ChannelStream(ConsoleStream):
    def __init__(self, channel: paramiko.Channel, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        self.channel = channel

    def fileno(self) -> int:
        return self.channel.fileno()

    def read_nowait(self, size: int) -> bytes | None:
        chan = self.channel
        # recv() only when it cannot wait: data buffered, or the stream ended.
        if chan.recv_ready() or chan.eof_received or chan.closed:
            return chan.recv(size)
        return None

    def write_would_block(self, size: int) -> bool:
        return self.channel.out_window_size < size

    def data_ready(self) -> bool:
        chan = self.channel
        return chan.recv_ready() or chan.eof_received or chan.closed

    def window_open(self) -> bool:
        return self.channel.out_window_size > 0

    def progress(self) -> tuple:
        # The send window shrinks as a pending write goes out and grows as the console reads it.
        return (self.channel.out_window_size, len(self.channel.in_buffer))

    def describe(self) -> dict:
        chan = self.channel
        return {
            **super().describe(),
            "channel": chan.get_id(),
            "data_ready": self.data_ready(),
            "in_buffered": len(chan.in_buffer),
            "in_window": chan.in_window_size,
            "out_window": chan.out_window_size,
            "eof_received": chan.eof_received,
            "transport_active": chan.transport.is_active() if chan.transport is not None else False,
        }

    def send_now(self, data: bytes) -> int:
        chan = self.channel
        if (
            len(data) <= DIRECT_SEND_MAX
            and chan.out_window_size >= len(data)
            and chan.transport.clear_to_send.is_set()
            and not chan.closed
        ):
            return chan.send(data)
        return 0

    async def _write(self, data: bytes) -> None:
        sent = self.send_now(data)
        if sent == len(data):
            return
        await self._loop.run_in_executor(_writers, self.channel.sendall, data[sent:])

    async def _close(self) -> None:
        await self._loop.run_in_executor(_writers, self.channel.close)


class SocketStream(ConsoleStream):
    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        self.sock = sock
        self.writer = sock  # where writes go (MuxStream: another socket)
        sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_nowait(self, size: int) -> bytes | None:
        try:
            return self.sock.recv(size)
        except (BlockingIOError, InterruptedError):
            return None
        except ConnectionResetError:
            return b""

    def data_ready(self) -> bool:
        if self.sock.fileno() < 0:
            return True
        # A peek, not select(): select() cannot take descriptors past 1023 (hundreds of consoles).
        try:
            self.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True  # an error (a reset) is what the next read reports
        return True  # data, or b"": the end of the stream

    def send_now(self, data: bytes) -> int:
        try:
            return self.writer.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    async def _write(self, data: bytes) -> None:
        await self._loop.sock_sendall(self.writer, data)

    async def _close(self) -> None:
        self.sock.close()


class MuxStream(SocketStream):
    """A console forwarded by an OpenSSH master (openssh.py): read from one socket pair, written into
    another (so an end of stream each way is its own), while the master's control connection stays open.
    """

    def __init__(self, reader: socket.socket, writer: socket.socket, control: socket.socket, loop):
        super().__init__(reader, loop)
        self.writer = writer
        writer.setblocking(False)
        self.control = control

    def describe(self) -> dict:
        return {**super().describe(), "reader": self.sock.fileno(), "writer": self.writer.fileno()}

    async def _close(self) -> None:
        # The master hands what is still in the writer's pair to the console, then sends the end of
        # stream and ends the session, closing its control connection; closing that first would
        # end the session at once, input and all. Wait for it (not forever) off the caller's path.
        self.sock.close()
        self.writer.close()
        task = self._loop.create_task(_release_control(self.control, self._loop))
        _closing.add(task)
        task.add_done_callback(_closing.discard)


async def _release_control(control: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
    try:
        async with asyncio.timeout(CLOSE_FLUSH_TIMEOUT):
            while await loop.sock_recv(control, 4096):
                pass
    except (TimeoutError, OSError):
        pass
    finally:
        control.close()


# AsyncsshStream: reading from the channel pauses (no window adjusts go to sshd) above
# READ_PAUSE buffered bytes and resumes once the reader has taken it below READ_RESUME.
READ_PAUSE = 4 * 1024 * 1024
READ_RESUME = 1024 * 1024
# Input asyncssh may hold for a channel whose window is exhausted before writes wait.
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
# At close, input still buffered for a console that stopped taking it is discarded after this.
CLOSE_FLUSH_TIMEOUT = 30.0


class ConsoleSession(asyncssh.SSHTCPSession):
    """asyncssh's callbacks for one direct-tcpip channel, forwarded to its AsyncsshStream."""

    def __init__(self, stream: AsyncsshStream):
        self.stream = stream

    def connection_made(self, chan) -> None:
        self.stream.attach(chan)

    def data_received(self, data: bytes, datatype) -> None:
        self.stream._received(data)

    def eof_received(self) -> bool:
        self.stream._ended()
        return False  # asyncssh answers with an EOF of its own once the buffered input is out

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream._lost(exc)

    def pause_writing(self) -> None:
        self.stream._writable.clear()

    def resume_writing(self) -> None:
        self.stream._writable.set()


class AsyncsshStream(ConsoleStream):
    """A direct-tcpip channel of asyncssh, on the loop that runs it (no descriptor, no threads).

    Received data waits in ``_chunks`` for ``read_nowait``; above READ_PAUSE bytes the channel
    stops reading, so sshd's window closes instead of memory growing. Writes go into asyncssh's
    send buffer and wait only while it holds more than WRITE_HIGH bytes.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        self.channel: asyncssh.SSHTCPChannel | None = None
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._paused = False
        self._eof = False
        self._error: Exception | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self.on_lost = None  # called once when the channel is gone (the pool's count of open channels)
        self.bytes_received = 0
        self.bytes_written = 0

    def session(self) -> ConsoleSession:
        """The session factory argument of ``conn.create_connection``."""
        return ConsoleSession(self)

    def attach(self, channel: asyncssh.SSHTCPChannel) -> None:
        self.channel = channel
        channel.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)

    # asyncssh's side (ConsoleSession) -------------------------------------

    def _received(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        self.bytes_received += len(data)
        if self._buffered > READ_PAUSE and not self._paused and self.channel is not None:
            self._paused = True
            self.channel.pause_reading()
        self.wake()

    def _ended(self) -> None:
        self._eof = True
        self.wake()

    def _lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._error = exc
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost()
        self._writable.set()  # a waiting write sees the channel gone
        self.wake()

    # the consumer's side ----------------------------------------------------

    def fileno(self) -> int:
        return -1

    def data_ready(self) -> bool:
        return bool(self._chunks) or self._eof

    def read_nowait(self, size: int) -> bytes | None:
        chunks = self._chunks
        if not chunks:
            return b"" if self._eof else None
        first = chunks[0]
        if len(first) >= size:
            if len(first) == size:
                chunks.popleft()
                data = first
            else:
                data, chunks[0] = first[:size], first[size:]
        else:
            parts, taken = [chunks.popleft()], len(first)
            while chunks and taken + len(chunks[0]) <= size:
                chunk = chunks.popleft()
                parts.append(chunk)
                taken += len(chunk)
            data = b"".join(parts)
        self._buffered -= len(data)
        if self._paused and self._buffered <= READ_RESUME:
            self._paused = False
            # May deliver what asyncssh held back at once (into _received): data is already taken.
            self.channel.resume_reading()
        return data

    async def wait_readable(self) -> None:
        if self.data_ready():
            return
        future = self._loop.create_future()
        self._wakeup = future
        try:
            await future
        finally:
            self._wakeup = None

    def _check_open(self) -> asyncssh.SSHTCPChannel:
        channel = self.channel
        if channel is None or self.closed or channel.is_closing():
            raise BrokenPipeError(f"console channel closed{f': {self._error}' if self._error else ''}")
        return channel

    def write_would_block(self, size: int) -> bool:
        return not self._writable.is_set()

    def window_open(self) -> bool:
        return getattr(self.channel, "_send_window", 0) > 0

    def progress(self) -> tuple:
        channel = self.channel
        out_buffered = channel.get_write_buffer_size() if channel is not None else 0
        return (self.bytes_received, self.bytes_written, out_buffered, self._buffered)

    def describe(self) -> dict:
        channel = self.channel
        return {
            **super().describe(),
            "data_ready": self.data_ready(),
            "in_buffered": self._buffered,
            "reading_paused": self._paused,
            "out_buffered": channel.get_write_buffer_size() if channel is not None else None,
            "out_window": getattr(channel, "_send_window", None),
            "writing_paused": not self._writable.is_set(),
            "eof_received": self._eof,
            "bytes_received": self.bytes_received,
            "bytes_written": self.bytes_written,
        }

    def send_now(self, data: bytes) -> int:
        channel = self._check_open()
        if len(data) <= DIRECT_SEND_MAX and channel.get_write_buffer_size() == 0:
            channel.write(data)
            self.bytes_written += len(data)
            return len(data)
        return 0

    async def _write(self, data: bytes) -> None:
        while not self._writable.is_set():
            await self._writable.wait()
        self._check_open().write(data)
        self.bytes_written += len(data)

    async def _close(self) -> None:
        channel = self.channel
        self._chunks.clear()
        self._buffered = 0
        if channel is None:
            return
        if channel.get_write_buffer_size() == 0:
            channel.close()
            return
        # Input still waits for the console's window: let it out (then EOF), but not forever;
        # meanwhile nothing more is read (sshd's window closes on what the console still sends).
        channel.pause_reading()
        channel.write_eof()
        task = self._loop.create_task(_close_when_flushed(channel))
        _closing.add(task)
        task.add_done_callback(_closing.discard)


_closing: set[asyncio.Task] = set()


async def _close_when_flushed(channel: asyncssh.SSHTCPChannel) -> None:
    deadline = asyncio.get_running_loop().time() + CLOSE_FLUSH_TIMEOUT
    while channel.get_write_buffer_size() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    if channel.get_write_buffer_size():
        channel.abort()
    else:
        channel.close()


def wrap(stream, loop: asyncio.AbstractEventLoop) -> ConsoleStream:
    if isinstance(stream, paramiko.Channel):
        return ChannelStream(stream, loop)
    return SocketStream(stream, loop)
