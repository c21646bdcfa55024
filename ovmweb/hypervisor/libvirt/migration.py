"""Migration of a domain to another server's libvirt, live or not, with or without its disks."""

from __future__ import annotations

import logging
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable

import libvirt

from ovmweb.errors import DriverError, OperationFailed

from .. import xml as xmlbuild
from ..base import Driver
from .connection import Connection, errors, translate

log = logging.getLogger(__name__)


def migration_xml(document: str, vnc_port: int | None, serial_port: int | None, disk_map: dict[str, str] | None) -> str:
    """A domain definition for the migration target: its console ports there, its disks' paths there."""
    root = ET.fromstring(xmlbuild.rewrite_disk_sources(document, disk_map) if disk_map else document)  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
    if vnc_port is not None:
        for graphics in root.findall("./devices/graphics[@type='vnc']"):
            graphics.set("port", str(vnc_port))
            graphics.set("autoport", "no")
    if serial_port is not None:
        # The <console> of a serial console repeats the first <serial>: both get the port.
        for el in root.findall("./devices/serial[@type='tcp']/source") + root.findall(
            "./devices/console[@type='tcp']/source"
        ):
            el.set("service", str(serial_port))
    return ET.tostring(root, encoding="unicode")


def migration_progress(dom) -> tuple[int, str]:
    """(percent, message) of a running migration from its job statistics."""
    try:
        stats = dom.jobStats()
    except libvirt.libvirtError:
        return 0, ""
    total = stats.get("data_total") or 0
    processed = stats.get("data_processed") or 0
    remaining = stats.get("data_remaining")
    if total and remaining is not None:
        percent = int(100 * (total - remaining) / total)
    else:
        percent = int(100 * processed / total) if total else 0
    message = f"{processed >> 20} MiB of {total >> 20} MiB sent"
    if stats.get("memory_iteration"):
        message += f", memory pass {stats['memory_iteration']}"
    return max(0, min(percent, 99)), message


def migration_flags(*, live: bool, unsafe: bool, copy_storage: bool) -> int:
    flags = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    if live:
        flags |= libvirt.VIR_MIGRATE_LIVE
    if unsafe:
        # A plain shared directory is not recognised by libvirt as shared storage.
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if copy_storage:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    return flags


def migration_params(dom, *, vnc_port: int | None, serial_port: int | None, disk_map: dict[str, str] | None) -> dict:
    """migrate3's parameters: the live and persistent definitions on the target and,
    with ``disk_map``, the target devices of the disks to copy."""
    params = {
        libvirt.VIR_MIGRATE_PARAM_DEST_XML: migration_xml(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), vnc_port, serial_port, disk_map
        ),
    }
    if dom.isPersistent():
        params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = migration_xml(
            dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_INACTIVE),
            vnc_port,
            serial_port,
            disk_map,
        )
    if disk_map:
        root = ET.fromstring(params[libvirt.VIR_MIGRATE_PARAM_DEST_XML])  # nosec B314  # a libvirt document, not user input; expat refuses entity bombs (tests/core/test_xml_safety.py)
        params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [
            el.find("target").get("dev")
            for el in root.findall("./devices/disk")
            if el.find("source") is not None and el.find("source").get("file") in disk_map.values()
        ]
    return params


class MigrationMixin(Connection):
    def migrate(
        self,
        uuid: str,
        target: Driver,
        *,
        live: bool = True,
        unsafe: bool = False,
        copy_storage: bool = False,
        vnc_port: int | None = None,
        serial_port: int | None = None,
        disk_map: dict[str, str] | None = None,
        progress: Callable[[int, str], None] | None = None,
    ) -> dict:
        """Migrate the domain to ``target`` and return libvirt's statistics of the completed job
        (``time_elapsed`` and ``downtime`` in ms, ``data_total`` ... in bytes).

        Client-managed: ovmweb holds both connections and libvirt runs the protocol
        through them, while the source QEMU streams straight to the target QEMU (at the
        target's ``migration_host``). The destination definition (live and persistent)
        gets the console ports chosen on the target (``vnc_port``, ``serial_port``: the
        source's may be taken there) and, with ``disk_map``, the disks' new paths.
        ``progress(percent, message)`` is called from this thread while the job runs; if
        it raises (an abort), the migration is cancelled, the domain stays on the source
        and the exception propagates."""
        if not isinstance(target, Connection):
            raise OperationFailed("the target server does not use libvirt")
        dom = self._domain(uuid)
        flags = migration_flags(live=live, unsafe=unsafe, copy_storage=bool(copy_storage or disk_map))
        with errors(f"migrating {uuid}"):
            params = migration_params(dom, vnc_port=vnc_port, serial_port=serial_port, disk_map=disk_map)
        source, destination = self._migration_connections(target.uri)
        outcome: dict = {}

        def run() -> None:
            try:
                arrived = source._domain(uuid).migrate3(destination._conn, params, flags)
                outcome["stats"] = arrived.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            except (libvirt.libvirtError, DriverError) as exc:
                outcome["error"] = exc

        worker = threading.Thread(target=run, name=f"migrate-{uuid}", daemon=True)
        worker.start()
        try:
            self._follow(worker, dom, uuid, progress)
        finally:
            if not worker.is_alive():
                source.close()
                destination.close()
        return self._migration_outcome(uuid, outcome)

    def _migration_connections(self, target_uri: str) -> tuple[Connection, Connection]:
        """Two connections of the migration's own, without keepalive.

        Same URIs, so the same OpenSSH wrapper and pinned host keys as every other
        connection, that nothing else uses meanwhile: libvirt 9.0's client crashed
        (SIGSEGV in virNetClient's I/O loop, libssh transport) when a keepalive exchange
        or another call (the monitor's, the progress reads) shared a connection with a
        running migration. Kept with the ssh transport too: a long migrate3 call gains
        nothing from sharing."""
        source = type(self)(self.uri)
        try:
            destination = type(self)(target_uri)
        except DriverError:
            source.close()
            raise
        for driver in (source, destination):
            driver._keepalive(False)
        return source, destination

    @staticmethod
    def _follow(worker: threading.Thread, dom, uuid: str, progress: Callable[[int, str], None] | None) -> None:
        """Wait for the migration thread, reporting progress read on this (shared) connection;
        anything raised meanwhile (an abort from ``progress``) cancels the migration."""
        try:
            while worker.is_alive():
                worker.join(0.25)
                if progress is not None and worker.is_alive():
                    percent, message = migration_progress(dom)
                    if message:
                        progress(percent, message)
        except BaseException:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                log.warning("could not abort the migration of %s", uuid)
            worker.join()
            raise

    @staticmethod
    def _migration_outcome(uuid: str, outcome: dict) -> dict:
        error = outcome.get("error")
        if isinstance(error, libvirt.libvirtError):
            raise translate(error, f"migrating {uuid}") from error
        if error is not None:
            raise error
        return {k: v for k, v in outcome["stats"].items() if isinstance(v, (int, float))}

    def migrate_with_storage(self, uuid: str, target: Driver, *, disk_map: dict[str, str], **options) -> dict:
        """Live migration copying the disks in ``disk_map`` (source path -> target path) along."""
        return self.migrate(uuid, target, live=True, disk_map=disk_map, **options)
