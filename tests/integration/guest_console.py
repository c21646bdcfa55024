"""The tiny guest's root shell on its serial console (the TCP port QEMU serves it on),
driven from a test: wait for the banner, run a command, get its output."""

from __future__ import annotations

import socket
import time
import uuid

BANNER = b"ovmweb tiny guest"


class GuestConsole:
    """A root shell on a running tiny guest's serial console. Commands run one at a time;
    their output is what the shell printed between two markers the command line echoes
    only in a split form (``BEG""IN``), so the terminal's echo of the input never matches."""

    def __init__(self, port: int, *, timeout: float = 240):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            assert chunk, self.buffer[-500:]
            self.buffer += chunk
        before, _, self.buffer = self.buffer.partition(marker)
        return before

    def wait_for_shell(self) -> None:
        """The banner came and the shell answers (the agent and drivers are up by then:
        /etc/rc ran before the shell was given)."""
        self._read_until(BANNER)
        time.sleep(1)
        self.run("true")

    def run(self, command: str) -> str:
        tag = uuid.uuid4().hex[:8]
        self.sock.sendall(f'echo BEG""IN-{tag}; {command}; echo EN""D-{tag}\n'.encode())
        self._read_until(f"BEGIN-{tag}".encode())
        output = self._read_until(f"END-{tag}".encode())
        return output.decode(errors="replace").replace("\r\n", "\n").strip("\n")

    def close(self) -> None:
        self.sock.close()
