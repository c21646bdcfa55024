"""Files on a hypervisor server outside libvirt's storage pools (a VM's directory
``<repo>/VirtualMachines/<uuid>/``): written directly for the ``local`` transport,
through SFTP on the pinned SSH connection otherwise.

libvirt's volume API cannot reach these files: it lists only the top level of a
``dir`` pool, and the VM directories are not pools.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from ..choices import Transport
from ..models import Server


class ServerFiles:
    """Plain file operations on one server. Writes are atomic: ``<name>.part`` then rename."""

    def makedirs(self, path: str) -> None:
        raise NotImplementedError

    def write(self, path: str, chunks: Iterable[bytes]) -> int:
        raise NotImplementedError

    def read_text(self, path: str) -> str | None:
        """The file's text, or None if it does not exist."""
        raise NotImplementedError

    def run(self, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
        raise NotImplementedError


class LocalFiles(ServerFiles):
    def makedirs(self, path: str) -> None:
        Path(path).mkdir(parents=True, exist_ok=True)

    def write(self, path: str, chunks: Iterable[bytes]) -> int:
        part = path + ".part"
        size = 0
        try:
            with open(part, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(part, path)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise
        return size

    def read_text(self, path: str) -> str | None:
        try:
            return Path(path).read_text()
        except FileNotFoundError:
            return None

    def run(self, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        except FileNotFoundError as exc:
            return 127, "", str(exc)
        except subprocess.TimeoutExpired:
            return 124, "", f"timed out after {timeout}s"
        return done.returncode, done.stdout, done.stderr


class SftpFiles(ServerFiles):
    def __init__(self, client):
        self.client = client
        self.sftp = client.open_sftp()

    def makedirs(self, path: str) -> None:
        current = ""
        for part in path.strip("/").split("/"):
            current += "/" + part
            try:
                self.sftp.stat(current)
            except FileNotFoundError:
                self.sftp.mkdir(current)

    def write(self, path: str, chunks: Iterable[bytes]) -> int:
        part = path + ".part"
        size = 0
        try:
            with self.sftp.open(part, "wb") as out:
                out.set_pipelined(True)
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
            self.sftp.posix_rename(part, path)
        except BaseException:
            try:
                self.sftp.remove(part)
            except OSError:
                pass
            raise
        return size

    def read_text(self, path: str) -> str | None:
        try:
            with self.sftp.open(path, "r") as fh:
                return fh.read().decode()
        except FileNotFoundError:
            return None

    def run(self, argv: list[str], timeout: float = 60) -> tuple[int, str, str]:
        from ovmweb.tunnels import ssh

        return ssh.run(self.client, shlex.join(argv), timeout=timeout)

    def close(self) -> None:
        self.sftp.close()
        self.client.close()


def is_local(server: Server) -> bool:
    # OVMWEB_HYPERVISOR_URI points every server at one libvirt (tests, benchmarks):
    # its files are this machine's.
    return server.transport == Transport.LOCAL or bool(settings.OVMWEB_HYPERVISOR_URI)


@contextmanager
def server_files(server: Server) -> Iterator[ServerFiles]:
    """File access on ``server`` for the duration of the block."""
    if is_local(server):
        yield LocalFiles()
        return
    from ovmweb.tunnels import credentials, ssh

    secret = credentials.decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    client = ssh.connect(
        hostname=server.hostname,
        port=server.ssh_port,
        username=server.ssh_user,
        password=secret.get("password"),
        private_key=secret.get("private_key"),
        expected_fingerprint=server.host_key_fingerprint,
    )
    files = SftpFiles(client)
    try:
        yield files
    finally:
        files.close()
