"""Real TCP services standing in for QEMU's console ports in tests."""

from __future__ import annotations

import hashlib
import socket
import threading


class TcpTarget:
    """Listens on 127.0.0.1; each connection is handled by ``mode``:

    - "echo": sends back every byte until the client ends its side;
    - "source": sends ``payload`` then closes;
    - "sink": reads to end of stream and records SHA-256 and length in ``received``;
    - "deaf": reads nothing (a hung guest) until the target is closed.
    """

    def __init__(self, mode: str, payload: bytes = b""):
        self.mode, self.payload = mode, payload
        self.received: list[tuple[int, str]] = []
        self.done = threading.Event()
        self._closed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        if mode == "deaf":
            # A fixed receive buffer (no autotuning up to tcp_rmem's 32 MiB): the sender fills it soon.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self.port = self.listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            if self.mode == "source":
                conn.sendall(self.payload)
            elif self.mode == "echo":
                while data := conn.recv(1 << 20):
                    conn.sendall(data)
            elif self.mode == "deaf":
                self._closed.wait()
            elif self.mode == "sink":
                digest, size = hashlib.sha256(), 0
                while data := conn.recv(1 << 20):
                    digest.update(data)
                    size += len(data)
                self.received.append((size, digest.hexdigest()))
        self.done.set()

    def close(self) -> None:
        self._closed.set()
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
