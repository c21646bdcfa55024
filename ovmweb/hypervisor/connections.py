"""One cached libvirt connection per server, reopened when it dies.

The ``local`` transport talks to ``qemu:///system``. Every server reached over SSH
uses libvirt's ``ssh`` transport, i.e. the OpenSSH client binary, with a private
key: libvirt 9.0's in-process ``libssh`` transport crashed the whole Python process
(SIGSEGV in its I/O loop) after a connection sat idle ~30 s and when two threads
shared one connection during a migration, so it is never used. OpenSSH runs in a
child process; a fault there only breaks that one connection (an ordinary
``ConnectionFailed``), never the console. A server given only a password gets a
key of the manager's own at discovery (``ovmweb.tunnels.manager_keys``).

libvirt passes ssh options poorly, so its ``command=`` points at a wrapper script
written under the var dir that execs ``ssh`` with the pinned known_hosts file as
the ONLY source of host keys (``StrictHostKeyChecking=yes``: any other key is
refused; ``UpdateHostKeys=no``, no global file: nothing is ever learned or written).

The key, known_hosts and wrapper files of a server are its only traces on this
machine besides the cached connection; ``purge()`` removes all of them when the
server is forgotten.
``OVMWEB_HYPERVISOR_URI`` overrides every server's URI (tests, benchmarks).
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

from django.conf import settings

from ovmweb.errors import ConnectionFailed
from ovmweb.tunnels.ssh import known_hosts_line, openssh_options

from .base import Driver

_lock = threading.Lock()
_drivers: dict[int, tuple[str, Driver]] = {}


def _secret_dir() -> Path:
    path = Path(settings.VAR_DIR) / "hypervisor"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _write_atomic(path: Path, text: str, mode: int) -> None:
    # Rewritten on every driver_for(): an ssh starting meanwhile (another thread, a
    # migration's own connection) must never read a truncated known_hosts or key file.
    try:
        if path.read_text() == text and (path.stat().st_mode & 0o777) == mode:
            return
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _write_private(path: Path, text: str) -> None:
    _write_atomic(path, text if text.endswith("\n") else text + "\n", 0o600)


def _wrapper_dir() -> Path:
    path = Path(settings.VAR_DIR) / "ssh-wrappers"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ssh_wrapper(*, server, known_hosts: Path, keyfile: Path) -> Path:
    """Write (mode 0700) and return the script libvirt runs instead of ``ssh``.

    Options given first on ssh's command line win over anything libvirt adds after
    them and over any ssh_config (``-F none``: no user or system config at all)."""
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    options = openssh_options(known_hosts=known_hosts, keyfile=keyfile)
    command = " ".join(shlex.quote(part) for part in [ssh, *options])
    script = (
        f'#!/bin/sh\n# Written by ovmweb for server {server.pk}; rewritten on every connection.\nexec {command} "$@"\n'
    )
    _wrapper_dir()
    path = server_files(server.pk)[2]
    _write_atomic(path, script, 0o700)
    return path


def server_uri(server) -> str:
    """The libvirt URI of ``server``; writes its key, pinned known_hosts and ssh wrapper files on the way."""
    if settings.OVMWEB_HYPERVISOR_URI:
        return settings.OVMWEB_HYPERVISOR_URI
    if server.transport == "local":
        return "qemu:///system"
    if not server.host_key:
        raise ConnectionFailed(f"server {server.name} has no pinned host key; discover it again")
    from ovmweb.tunnels.credentials import decrypt_credentials

    _secret_dir()
    keyfile, known_hosts, _wrapper = server_files(server.pk)
    _write_private(
        known_hosts, known_hosts_line(hostname=server.hostname, port=server.ssh_port, host_key=server.host_key)
    )
    creds = decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    if not creds.get("private_key"):
        # A password alone is never handed to libvirt (no libssh, see above): discovery
        # trades it for a key of the manager's own, and only a finished discovery has one.
        raise ConnectionFailed(
            f"server {server.name} has no SSH key yet (only a password); discover it again "
            "so that ovmweb installs its own key there"
        )
    authority = f"{quote(server.ssh_user)}@{server.hostname}:{server.ssh_port}"
    _write_private(keyfile, creds["private_key"])
    wrapper = ssh_wrapper(server=server, known_hosts=known_hosts, keyfile=keyfile)
    # no_verify=0: ssh's StrictHostKeyChecking is not turned off; no_tty=1: BatchMode.
    params = [
        f"command={quote(str(wrapper), safe='/')}",
        f"keyfile={quote(str(keyfile), safe='/')}",
        "no_verify=0",
        "no_tty=1",
    ]
    return f"qemu+ssh://{authority}/system?" + "&".join(params)


def server_files(server_id: int) -> list[Path]:
    """The files ``server_uri`` writes for server ``server_id`` (whether they exist or not)."""
    directory = Path(settings.VAR_DIR)
    return [
        directory / "hypervisor" / f"server-{server_id}.key",
        directory / "hypervisor" / f"server-{server_id}.known_hosts",
        directory / "ssh-wrappers" / f"server-{server_id}.sh",
    ]


def driver_for(server) -> Driver:
    """The live driver of ``server`` (opened on first use, reopened if the connection died)."""
    from .libvirt import LibvirtDriver

    uri = server_uri(server)
    with _lock:
        cached = _drivers.get(server.pk)
        if cached and cached[0] == uri and cached[1].is_alive():
            return cached[1]
        if cached:
            cached[1].close()
            del _drivers[server.pk]
    driver = LibvirtDriver(uri)
    with _lock:
        # Another thread may have connected meanwhile; keep one connection.
        existing = _drivers.get(server.pk)
        if existing and existing[0] == uri and existing[1].is_alive():
            driver.close()
            return existing[1]
        _drivers[server.pk] = (uri, driver)
    return driver


def forget(server) -> None:
    """Close and drop the cached connection of ``server`` (it failed, or its credentials changed)."""
    _close_cached(server.pk)


def _close_cached(server_id: int) -> None:
    with _lock:
        cached = _drivers.pop(server_id, None)
    if cached:
        cached[1].close()


def purge(server_id: int) -> None:
    """Everything of a forgotten server on this machine: its cached connection and its
    key, known_hosts and wrapper files (the key is a secret: it must not outlive the server)."""
    _close_cached(server_id)
    for path in server_files(server_id):
        path.unlink(missing_ok=True)
        # Half-written temporary copies of _write_atomic (a process killed mid-write).
        for leftover in path.parent.glob(f".{path.name}.*"):
            leftover.unlink(missing_ok=True)


def close_all() -> None:
    with _lock:
        cached = list(_drivers.values())
        _drivers.clear()
    for _uri, driver in cached:
        driver.close()
