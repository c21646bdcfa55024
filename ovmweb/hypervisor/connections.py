"""One cached libvirt connection per server, reopened when it dies.

The ``local`` transport talks to ``qemu:///system``; ``ssh`` uses libvirt's
libssh transport with a known_hosts file that holds only the pinned host key
(``known_hosts_verify=normal`` refuses any other key, and nothing is learned).
``OVMWEB_HYPERVISOR_URI`` overrides every server's URI (tests, benchmarks).
"""
from __future__ import annotations

import os
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


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text if text.endswith("\n") else text + "\n")


def known_hosts_line(*, hostname: str, port: int, host_key: str) -> str:
    host = hostname if port == 22 else f"[{hostname}]:{port}"
    return f"{host} {host_key.strip()}"


def server_uri(server) -> str:
    """The libvirt URI of ``server``; writes its key and pinned known_hosts files on the way."""
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
    params = [f"known_hosts={quote(str(known_hosts))}", "known_hosts_verify=normal"]
    creds = decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    if creds.get("private_key"):
        keyfile = directory / f"server-{server.pk}.key"
        _write_private(keyfile, creds["private_key"])
        params += [f"keyfile={quote(str(keyfile))}", "sshauth=privkey"]
    elif creds.get("password"):
        params.append("sshauth=password")
    return f"qemu+libssh://{quote(server.ssh_user)}@{server.hostname}:{server.ssh_port}/system?" + "&".join(params)


def _password(server) -> str | None:
    if settings.OVMWEB_HYPERVISOR_URI or server.transport == "local" or not server.credentials_encrypted:
        return None
    from ovmweb.tunnels.credentials import decrypt_credentials

    return decrypt_credentials(server.credentials_encrypted).get("password")


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
