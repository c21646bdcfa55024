"""One libvirt connection, the process-wide event loop, and libvirt errors as ``DriverError``.

Every other module of this package builds on ``Connection``: it holds the
``virConnect`` and looks domains, pools and volumes up with errors translated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import libvirt

from ovmweb.errors import ConnectionFailed, DomainNotFound, DriverError, HostKeyMismatch, OperationFailed

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is declared dead

_loop_lock = threading.Lock()
_loop_started = False


def _libvirt_quiet(_ctx, _err) -> None:
    # libvirt prints every error to stderr by default; ours become exceptions.
    return None


def ensure_event_loop() -> None:
    """Start libvirt's default event loop in a daemon thread (once per process)."""
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_libvirt_quiet, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # the loop must outlive any one callback
                    log.exception("libvirt event loop iteration failed")
                    time.sleep(0.1)

        threading.Thread(target=run, name="libvirt-events", daemon=True).start()
        _loop_started = True


_CONNECTION_CODES = {
    libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_SYSTEM_ERROR,
    libvirt.VIR_ERR_RPC,
    libvirt.VIR_ERR_AUTH_FAILED,
    libvirt.VIR_ERR_AUTH_CANCELLED,
    libvirt.VIR_ERR_INVALID_CONN,
    getattr(libvirt, "VIR_ERR_AUTH_UNAVAILABLE", -1),
    getattr(libvirt, "VIR_ERR_NO_SERVER", -1),
}


def translate(exc: libvirt.libvirtError, what: str) -> DriverError:
    """The ``DriverError`` subclass for a libvirt error raised while doing ``what``."""
    code = exc.get_error_code()
    message = f"{what}: {exc.get_error_message() or exc}"
    if "HOST KEY VERIFICATION FAILED" in message.upper():
        return HostKeyMismatch(message, offered_fingerprint="")
    if code == libvirt.VIR_ERR_NO_DOMAIN:
        return DomainNotFound(message)
    if code in _CONNECTION_CODES:
        return ConnectionFailed(message)
    return OperationFailed(message)


@contextmanager
def errors(what: str) -> Iterator[None]:
    """Re-raise a libvirt error inside the block as a ``DriverError``."""
    try:
        yield
    except libvirt.libvirtError as exc:
        raise translate(exc, what) from exc


def ignoring_errors(call, *args) -> None:
    """Best-effort cleanup: ``call(*args)``, a libvirt error ignored."""
    try:
        call(*args)
    except libvirt.libvirtError:
        pass


class Connection:
    """A connection to one libvirt daemon and the lookups every capability uses."""

    def __init__(self, uri: str):
        ensure_event_loop()
        self.uri = uri
        self._closed = False
        with errors(f"cannot connect to {self._safe_uri()}"):
            self._conn = libvirt.open(uri)
        self._keepalive(True)

    def _keepalive(self, on: bool) -> None:
        try:
            self._conn.setKeepAlive(KEEPALIVE_INTERVAL if on else 0, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # local drivers (test://, qemu:///system without a daemon) have no keepalive

    def _safe_uri(self) -> str:
        return self.uri.split("?", 1)[0]

    def _domain(self, uuid: str):
        with errors(f"domain {uuid}"):
            return self._conn.lookupByUUIDString(str(uuid))

    def _maybe_domain(self, uuid: str):
        try:
            return self._conn.lookupByUUIDString(str(uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise translate(exc, f"domain {uuid}") from exc

    def _pool(self, name: str):
        with errors(f"storage pool {name}"):
            return self._conn.storagePoolLookupByName(name)

    def _volume(self, pool: str, name: str):
        p = self._pool(pool)
        with errors(f"volume {name} in {pool}"):
            return p.storageVolLookupByName(name)

    def is_alive(self) -> bool:
        if self._closed:
            return False
        try:
            return bool(self._conn.isAlive())
        except libvirt.libvirtError:
            return False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._conn.close()
        except libvirt.libvirtError:
            pass
