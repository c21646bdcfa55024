"""One cached libvirt connection per server, reopened when it dies.

The ``local`` transport talks to ``qemu:///system``. A server reached over SSH
with a key uses libvirt's ``ssh`` transport, i.e. the OpenSSH client binary: libvirt
9.0's in-process ``libssh`` transport crashed the whole Python process (SIGSEGV in
its I/O loop) after a connection sat idle ~30 s and when two threads shared one
connection during a migration. OpenSSH runs in a child process; a fault there only
breaks that one connection (an ordinary ``ConnectionFailed``), never the console.

libvirt passes ssh options poorly, so its ``command=`` points at a wrapper script
written under the var dir that execs ``ssh`` with the pinned known_hosts file as
the ONLY source of host keys (``StrictHostKeyChecking=yes``: any other key is
refused; ``UpdateHostKeys=no``, no global file: nothing is ever learned or written).

KNOWN RISK: a server discovered with only a password keeps the libssh transport
(OpenSSH cannot take a password non-interactively), and with it the crash above.
Give servers a private key instead (installing a key of the manager's own at
discovery, as virt-manager-style managers do, is not implemented yet).
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

from .base import ConnectionFailed, Driver

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


def known_hosts_line(*, hostname: str, port: int, host_key: str) -> str:
    host = hostname if port == 22 else f"[{hostname}]:{port}"
    return f"{host} {host_key.strip()}"


def _wrapper_dir() -> Path:
    path = Path(settings.VAR_DIR) / "ssh-wrappers"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def ssh_wrapper(*, server, known_hosts: Path, keyfile: Path) -> Path:
    """Write (mode 0700) and return the script libvirt runs instead of ``ssh``.

    Options given first on ssh's command line win over anything libvirt adds after
    them and over any ssh_config (``-F none``: no user or system config at all)."""
    ssh = shutil.which("ssh") or "/usr/bin/ssh"
    options = [
        "-F", "none",
        "-o", f"UserKnownHostsFile={known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "StrictHostKeyChecking=yes",
        "-o", "UpdateHostKeys=no",
        "-o", "CheckHostIP=no",  # no second lookup under the bare IP address
        "-o", "HashKnownHosts=no",
        "-o", "BatchMode=yes",  # never prompt: no terminal in a web console
        "-o", "PasswordAuthentication=no",
        "-o", "KbdInteractiveAuthentication=no",
        "-o", "IdentitiesOnly=yes",
        "-o", "IdentityAgent=none",
        "-o", "ConnectTimeout=10",
        # Dead peers are noticed by ssh itself too, not only by libvirt's keepalive.
        "-o", "ServerAliveInterval=10",
        "-o", "ServerAliveCountMax=3",
        "-i", str(keyfile),
    ]
    script = "#!/bin/sh\n# Written by ovmweb for server %d; rewritten on every connection.\nexec %s \"$@\"\n" % (
        server.pk, " ".join(shlex.quote(part) for part in [ssh, *options]))
    path = _wrapper_dir() / f"server-{server.pk}.sh"
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

    directory = _secret_dir()
    known_hosts = directory / f"server-{server.pk}.known_hosts"
    _write_private(known_hosts, known_hosts_line(hostname=server.hostname, port=server.ssh_port, host_key=server.host_key))
    creds = decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    authority = f"{quote(server.ssh_user)}@{server.hostname}:{server.ssh_port}"
    if creds.get("private_key"):
        keyfile = directory / f"server-{server.pk}.key"
        _write_private(keyfile, creds["private_key"])
        wrapper = ssh_wrapper(server=server, known_hosts=known_hosts, keyfile=keyfile)
        # no_verify=0: ssh's StrictHostKeyChecking is not turned off; no_tty=1: BatchMode.
        params = [f"command={quote(str(wrapper), safe='/')}", f"keyfile={quote(str(keyfile), safe='/')}",
                  "no_verify=0", "no_tty=1"]
        return f"qemu+ssh://{authority}/system?" + "&".join(params)
    # Password only: libssh (see the module docstring for why this is the exception).
    params = [f"known_hosts={quote(str(known_hosts))}", "known_hosts_verify=normal"]
    if creds.get("password"):
        params.append("sshauth=password")
    return f"qemu+libssh://{authority}/system?" + "&".join(params)


def _password(server) -> str | None:
    if settings.OVMWEB_HYPERVISOR_URI or server.transport == "local" or not server.credentials_encrypted:
        return None
    from ovmweb.tunnels.credentials import decrypt_credentials

    creds = decrypt_credentials(server.credentials_encrypted)
    # Only the libssh transport (password-only servers) asks for it.
    return None if creds.get("private_key") else creds.get("password")


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
    driver = LibvirtDriver(uri, password=_password(server))
    with _lock:
        # Another thread may have connected meanwhile; keep one connection.
        existing = _drivers.get(server.pk)
        if existing and existing[0] == uri and existing[1].is_alive():
            driver.close()
            return existing[1]
        _drivers[server.pk] = (uri, driver)
    return driver


def forget(server) -> None:
    """Close and drop the cached connection of ``server`` (deleted, or credentials changed)."""
    with _lock:
        cached = _drivers.pop(server.pk, None)
    if cached:
        cached[1].close()


def close_all() -> None:
    with _lock:
        cached = list(_drivers.values())
        _drivers.clear()
    for _uri, driver in cached:
        driver.close()
