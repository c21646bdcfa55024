"""The libvirt driver: the only module of ovmweb that imports libvirt.

Every libvirt error leaves this module as a ``DriverError`` subclass. One
process-wide event loop thread (libvirt's default implementation) serves
keepalive and domain events for every connection, so it is registered before
the first connection is opened.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import libvirt

from ovmweb.errors import ConnectionFailed, DomainNotFound, DriverError, HostKeyMismatch, OperationFailed

from . import xml as xmlbuild
from .base import (
    AgentTimeout,
    DiskSpec,
    DomainEvent,
    DomainInfo,
    DomainSpec,
    Driver,
    HostFacts,
    NicSpec,
    PoolInfo,
    PoolSpec,
    PowerState,
    StorageDriver,
    VolumeInfo,
)

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5  # seconds between keepalive probes
KEEPALIVE_COUNT = 3  # unanswered probes before the connection is declared dead
_CHUNK = 1024 * 1024

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


def _translate(exc: libvirt.libvirtError, what: str) -> DriverError:
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
def _errors(what: str) -> Iterator[None]:
    try:
        yield
    except libvirt.libvirtError as exc:
        raise _translate(exc, what) from exc


def _version(number: int) -> str:
    major, rest = divmod(number, 1_000_000)
    minor, micro = divmod(rest, 1000)
    return f"{major}.{minor}.{micro}"


_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
}

_EVENT = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_EVENT_RESUMED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_EVENT_STOPPED: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_EVENT_UNDEFINED: PowerState.ABSENT,
    libvirt.VIR_DOMAIN_EVENT_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: PowerState.PAUSED,
}
_STOPPED_REASONS = {
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN: "shutdown",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_DESTROYED: "destroyed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED: "crashed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_MIGRATED: "migrated",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED: "saved",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FAILED: "failed",
    libvirt.VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT: "snapshot",
}


def _prealloc_flags(format: str, sparse: bool) -> int:
    """Flags that make libvirt really allocate a non-sparse volume.

    For qcow2, ``allocation == capacity`` alone still yields a sparse file
    (measured: 200 KiB for 64 MiB); with PREALLOC_METADATA libvirt passes
    ``preallocation=falloc`` to qemu-img, for creation and for copies alike.
    A raw volume is allocated from ``allocation`` alone (and refuses the flag).
    """
    if sparse or format != "qcow2":
        return 0
    return libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA


def _volume_format(vol) -> str:
    fmt = ET.fromstring(vol.XMLDesc(0)).find("./target/format")
    return fmt.get("type") if fmt is not None else "raw"


def _migration_xml(
    document: str, vnc_port: int | None, serial_port: int | None, disk_map: dict[str, str] | None
) -> str:
    """A domain definition for the migration target: its console ports there, its disks' paths there."""
    root = ET.fromstring(xmlbuild.rewrite_disk_sources(document, disk_map) if disk_map else document)
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


def _migration_progress(dom) -> tuple[int, str]:
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


class LibvirtDriver(StorageDriver, Driver):
    """A connection to one libvirt daemon, e.g. ``qemu:///system``,
    ``qemu+ssh://root@host:22/system?command=<wrapper>...`` (see ``connections.server_uri``)
    or ``test:///default``."""

    def __init__(self, uri: str):
        ensure_event_loop()
        self.uri = uri
        self._closed = False
        with _errors(f"cannot connect to {self._safe_uri()}"):
            self._conn = libvirt.open(uri)
        self._keepalive(True)

    def _keepalive(self, on: bool) -> None:
        try:
            self._conn.setKeepAlive(KEEPALIVE_INTERVAL if on else 0, KEEPALIVE_COUNT)
        except libvirt.libvirtError:
            pass  # local drivers (test://, qemu:///system without a daemon) have no keepalive

    def _safe_uri(self) -> str:
        return self.uri.split("?", 1)[0]

    # ---------------------------------------------------------------- helpers
    def _domain(self, uuid: str):
        with _errors(f"domain {uuid}"):
            return self._conn.lookupByUUIDString(str(uuid))

    def _maybe_domain(self, uuid: str):
        try:
            return self._conn.lookupByUUIDString(str(uuid))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise _translate(exc, f"domain {uuid}") from exc

    def _pool(self, name: str):
        with _errors(f"storage pool {name}"):
            return self._conn.storagePoolLookupByName(name)

    def _volume(self, pool: str, name: str):
        p = self._pool(pool)
        with _errors(f"volume {name} in {pool}"):
            return p.storageVolLookupByName(name)

    @staticmethod
    def _info(dom) -> DomainInfo:
        state, _reason = dom.state()
        info = dom.info()
        managed = bool(dom.hasManagedSaveImage(0)) if dom.isPersistent() else False
        power = _STATE.get(state, PowerState.RUNNING)
        if power == PowerState.SHUTOFF and managed:
            power = PowerState.SAVED
        return DomainInfo(
            uuid=dom.UUIDString(),
            name=dom.name(),
            state=power,
            vcpus=info[3],
            memory_mib=info[2] // 1024,
            has_managed_save=managed,
        )

    # ---------------------------------------------------------------- host
    def host_facts(self) -> HostFacts:
        with _errors("reading host facts"):
            model, memory_mib, cpus, _mhz, _nodes, _sockets, _cores, _threads = self._conn.getInfo()
            caps = ET.fromstring(self._conn.getCapabilities())
            hostname = self._conn.getHostname()
            libvirt_version = _version(self._conn.getLibVersion())
            try:
                qemu_version = _version(self._conn.getVersion())
            except libvirt.libvirtError:
                qemu_version = ""
            free = self._conn.getFreeMemory() // (1024 * 1024)
        host_uuid = caps.findtext("./host/uuid") or ""
        vendor = caps.findtext("./host/cpu/vendor") or ""
        cpu_model = caps.findtext("./host/cpu/model") or model
        types = {d.get("type") for d in caps.findall("./guest/arch/domain")}
        # TCG is usable wherever QEMU is; KVM only once probe_kvm() proved it.
        domain_types = ["qemu"] if "qemu" in types else sorted(t for t in types if t)
        return HostFacts(
            hostname=hostname,
            host_uuid=host_uuid,
            cpu_vendor=vendor,
            cpu_family=None,
            cpu_model=None,
            cpu_model_name=cpu_model,
            cpu_cores=cpus,
            memory_mib=memory_mib,
            libvirt_version=libvirt_version,
            qemu_version=qemu_version,
            domain_types=domain_types,
            free_memory_mib=free,
        )

    def probe_kvm(self, timeout: float = 8.0) -> bool:
        """Run a transient KVM domain and require guest CPU progress within ``timeout``.

        ``/dev/kvm`` and libvirt's capabilities both claim KVM on machines whose
        CPU does not expose virtualisation; guests hang there. So KVM counts only
        if the probe's vCPU really executes (its CPU time advances while the
        firmware runs). The probe runs in its own thread because a hung KVM
        start can block the libvirt call itself.
        """
        caps = ET.fromstring(self._conn.getCapabilities())
        if "kvm" not in {d.get("type") for d in caps.findall("./guest/arch/domain")}:
            return False
        name = f"ovmweb-kvm-probe-{uuidlib.uuid4().hex[:8]}"
        probe_xml = (
            f"<domain type='kvm'><name>{name}</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>"
            "<devices><graphics type='vnc' autoport='yes' listen='127.0.0.1'/></devices></domain>"
        )
        result: dict[str, bool] = {}

        def run() -> None:
            try:
                dom = self._conn.createXML(probe_xml, 0)
                first = dom.info()[4]
                deadline = time.monotonic() + max(timeout - 1, 1)
                while time.monotonic() < deadline:
                    time.sleep(0.3)
                    if dom.info()[4] > first + 50_000_000:  # 50 ms of guest CPU
                        result["ok"] = True
                        return
                result["ok"] = False
            except libvirt.libvirtError:
                result["ok"] = False

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        thread.join(timeout)
        try:
            self._conn.lookupByName(name).destroy()
        except libvirt.libvirtError:
            pass
        return bool(result.get("ok"))

    # ---------------------------------------------------------------- domains
    def define(self, spec: DomainSpec) -> None:
        try:
            document = xmlbuild.domain_xml(spec)
        except ValueError as exc:
            raise OperationFailed(str(exc)) from exc
        with _errors(f"defining {spec.name}"):
            self._conn.defineXML(document)

    def undefine(self, uuid: str) -> None:
        dom = self._maybe_domain(uuid)
        if dom is None:
            return
        with _errors(f"undefining {uuid}"):
            if dom.isActive():
                dom.destroy()
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise

    def start(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"starting {uuid}"):
            if not dom.isActive():
                dom.create()  # restores a managed-save image when there is one

    def shutdown(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"shutting down {uuid}"):
            if dom.isActive():
                dom.shutdown()

    def destroy(self, uuid: str) -> None:
        dom = self._maybe_domain(uuid)
        if dom is None:
            return
        try:
            dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                raise _translate(exc, f"destroying {uuid}") from exc

    def reboot(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"rebooting {uuid}"):
            dom.reboot(0)

    def suspend(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"suspending {uuid}"):
            dom.suspend()

    def resume(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"resuming {uuid}"):
            if not dom.isActive() and dom.hasManagedSaveImage(0):
                dom.create()
            else:
                dom.resume()

    @staticmethod
    def _affects(dom) -> list[int]:
        # Live and config are applied as two calls: some drivers refuse both flags at once.
        if dom.isActive():
            flags = [libvirt.VIR_DOMAIN_AFFECT_LIVE]
            if dom.isPersistent():
                flags.append(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
            return flags
        return [libvirt.VIR_DOMAIN_AFFECT_CONFIG]

    def set_vcpus(self, uuid: str, count: int) -> None:
        dom = self._domain(uuid)
        with _errors(f"setting vCPUs of {uuid}"):
            for flags in self._affects(dom):
                dom.setVcpusFlags(count, flags)

    def set_memory(self, uuid: str, memory_mib: int) -> None:
        dom = self._domain(uuid)
        with _errors(f"setting memory of {uuid}"):
            for flags in self._affects(dom):
                dom.setMemoryFlags(memory_mib * 1024, flags)

    def domain_info(self, uuid: str) -> DomainInfo:
        dom = self._domain(uuid)
        with _errors(f"reading {uuid}"):
            return self._info(dom)

    def domain_xml(self, uuid: str) -> str:
        dom = self._domain(uuid)
        with _errors(f"reading {uuid}"):
            return dom.XMLDesc(0)

    def list_domains(self) -> list[DomainInfo]:
        with _errors("listing domains"):
            result = []
            for dom in self._conn.listAllDomains(0):
                try:
                    result.append(self._info(dom))
                except libvirt.libvirtError as exc:
                    # A domain undefined between the listing and the read is simply gone.
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            return result

    def migrate(  # noqa: C901
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
        if not isinstance(target, LibvirtDriver):
            raise OperationFailed("the target server does not use libvirt")
        dom = self._domain(uuid)
        flags = libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
        if live:
            flags |= libvirt.VIR_MIGRATE_LIVE
        if unsafe:
            # A plain shared directory is not recognised by libvirt as shared storage.
            flags |= libvirt.VIR_MIGRATE_UNSAFE
        if copy_storage or disk_map:
            flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
        with _errors(f"migrating {uuid}"):
            params = {
                libvirt.VIR_MIGRATE_PARAM_DEST_XML: _migration_xml(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE), vnc_port, serial_port, disk_map
                ),
            }
            if dom.isPersistent():
                params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = _migration_xml(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE | libvirt.VIR_DOMAIN_XML_INACTIVE),
                    vnc_port,
                    serial_port,
                    disk_map,
                )
            if disk_map:
                root = ET.fromstring(params[libvirt.VIR_MIGRATE_PARAM_DEST_XML])
                params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = [
                    el.find("target").get("dev")
                    for el in root.findall("./devices/disk")
                    if el.find("source") is not None and el.find("source").get("file") in disk_map.values()
                ]
        # The migration runs on two connections of its own (same URIs, so the same OpenSSH
        # wrapper and pinned host keys as every other connection), without keepalive, that
        # nothing else uses meanwhile: libvirt 9.0's client crashed (SIGSEGV in virNetClient's
        # I/O loop, libssh transport) when a keepalive exchange or another call (the monitor's,
        # the progress reads) shared a connection with a running migration. Kept with the
        # ssh transport too: a long migrate3 call gains nothing from sharing.
        source = LibvirtDriver(self.uri)
        try:
            destination = LibvirtDriver(target.uri)
        except DriverError:
            source.close()
            raise
        outcome: dict = {}

        def run() -> None:
            try:
                arrived = source._domain(uuid).migrate3(destination._conn, params, flags)
                outcome["stats"] = arrived.jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
            except (libvirt.libvirtError, DriverError) as exc:
                outcome["error"] = exc

        for driver in (source, destination):
            driver._keepalive(False)
        worker = threading.Thread(target=run, name=f"migrate-{uuid}", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.5)
                if progress is not None and worker.is_alive():
                    percent, message = _migration_progress(dom)  # on this (shared) connection
                    if message:
                        progress(percent, message)
        except BaseException:
            try:
                dom.abortJob()
            except libvirt.libvirtError:
                log.warning("could not abort the migration of %s", uuid)
            worker.join()
            raise
        finally:
            if not worker.is_alive():
                source.close()
                destination.close()
        error = outcome.get("error")
        if isinstance(error, libvirt.libvirtError):
            raise _translate(error, f"migrating {uuid}") from error
        if error is not None:
            raise error
        return {k: v for k, v in outcome["stats"].items() if isinstance(v, (int, float))}

    def migrate_with_storage(self, uuid: str, target: Driver, *, disk_map: dict[str, str], **options) -> dict:
        """Live migration copying the disks in ``disk_map`` (source path -> target path) along."""
        return self.migrate(uuid, target, live=True, disk_map=disk_map, **options)

    # ---------------------------------------------------------------- hot-plug
    @staticmethod
    def _xml_for(dom, flags: int) -> ET.Element:
        # The persistent definition can differ from the live one (devices pending a restart).
        inactive = libvirt.VIR_DOMAIN_XML_INACTIVE if flags == libvirt.VIR_DOMAIN_AFFECT_CONFIG else 0
        return ET.fromstring(dom.XMLDesc(inactive))

    def attach_device(self, uuid: str, device: DiskSpec | NicSpec, *, domain_type: str) -> str:
        dom = self._domain(uuid)
        with _errors(f"hot-plugging a device into {uuid}"):
            if isinstance(device, NicSpec):
                document, ident = xmlbuild.nic_device_xml(device, domain_type=domain_type), device.mac
            else:
                used = {t.get("dev") for t in self._xml_for(dom, 0).findall("./devices/disk/target")}
                used |= {
                    t.get("dev")
                    for t in self._xml_for(dom, libvirt.VIR_DOMAIN_AFFECT_CONFIG).findall("./devices/disk/target")
                }
                ident = xmlbuild.next_disk_target(device.bus, used)
                document = xmlbuild.disk_device_xml(device, bus=device.bus, target=ident)
            for flags in self._affects(dom):
                dom.attachDeviceFlags(document, flags)
        return ident

    @staticmethod
    def _find_device(root: ET.Element, device: DiskSpec | NicSpec) -> ET.Element | None:
        if isinstance(device, NicSpec):
            for el in root.findall("./devices/interface"):
                mac = el.find("mac")
                if mac is not None and mac.get("address", "").lower() == device.mac.lower():
                    return el
            return None
        for el in root.findall("./devices/disk"):
            source = el.find("source")
            if source is not None and source.get("file") == device.path:
                return el
        return None

    def detach_device(self, uuid: str, device: DiskSpec | NicSpec) -> None:
        dom = self._domain(uuid)
        with _errors(f"hot-unplugging a device from {uuid}"):
            found = False
            for flags in self._affects(dom):
                el = self._find_device(self._xml_for(dom, flags), device)
                if el is None:
                    continue  # already gone there
                found = True
                dom.detachDeviceFlags(ET.tostring(el, encoding="unicode"), flags)
            if not found:
                raise OperationFailed(f"domain {uuid} has no such device")

    def change_media(self, uuid: str, *, current_path: str, new_path: str) -> None:
        dom = self._domain(uuid)
        with _errors(f"changing the CD-ROM of {uuid}"):
            for flags in self._affects(dom):
                root = self._xml_for(dom, flags)
                drive = None
                for el in root.findall("./devices/disk[@device='cdrom']"):
                    source = el.find("source")
                    path = source.get("file", "") if source is not None else ""
                    if path == current_path:
                        drive = el
                        break
                if drive is None:
                    raise OperationFailed(f"domain {uuid} has no CD-ROM drive holding {current_path or 'nothing'}")
                source = drive.find("source")
                if source is not None:
                    drive.remove(source)
                if new_path:
                    source = ET.Element("source", file=new_path)
                    drive.insert(1, source)
                dom.updateDeviceFlags(
                    ET.tostring(drive, encoding="unicode"), flags | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE
                )

    # ---------------------------------------------------------------- guest messages
    def send_messages(self, uuid: str, messages: list[tuple[str, str]], *, timeout: float = 5.0) -> dict[str, str]:  # noqa: C901
        """Talk to the guest agent through libvirt's channel stream (works over any transport)."""
        dom = self._domain(uuid)
        with _errors(f"opening the messages channel of {uuid}"):
            stream = self._conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            dom.openChannel(xmlbuild.MESSAGES_CHANNEL, stream, libvirt.VIR_DOMAIN_CHANNEL_FORCE)
        buffer = bytearray()

        def request(frame: str, rid: str) -> list[str]:
            data = (frame + "\n").encode()
            while data:
                sent = stream.send(data)
                if sent == -2:
                    time.sleep(0.01)
                    continue
                data = data[sent:]
            deadline = time.monotonic() + timeout
            while True:
                while b"\n" in buffer:
                    line, _, rest = bytes(buffer).partition(b"\n")
                    buffer[:] = rest
                    parts = line.decode(errors="replace").split()
                    if len(parts) >= 2 and parts[1] == rid:
                        return parts
                    # A line for an earlier request (answered after its client left): stale.
                if time.monotonic() > deadline:
                    raise AgentTimeout("the guest agent did not answer")
                chunk = stream.recv(4096)
                if chunk == -2:
                    time.sleep(0.02)
                    continue
                if not chunk:
                    raise OperationFailed("the messages channel closed (is the VM running?)")
                buffer.extend(chunk)

        try:
            with _errors(f"messages to {uuid}"):
                rid = uuidlib.uuid4().hex[:8]
                request(f"PING {rid}", rid)
                results = {}
                for key, value in messages:
                    rid = uuidlib.uuid4().hex[:8]
                    b64 = base64.b64encode(value.encode()).decode()
                    parts = request(f"SET {rid} {key} {b64}", rid)
                    if parts[0] != "ACK":
                        raise OperationFailed(f"the guest refused {key}: {' '.join(parts[3:])}")
                    results[key] = parts[3] if len(parts) > 3 else "ok"
                return results
        finally:
            try:
                stream.finish()
            except libvirt.libvirtError:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass

    # ---------------------------------------------------------------- events
    def subscribe_events(
        self, callback: Callable[[DomainEvent], None], on_close: Callable[[], None] | None = None
    ) -> object:
        def lifecycle(_conn, dom, event, detail, _opaque) -> None:
            state = _EVENT.get(event)
            if state is None:
                return
            reason = ""
            if event == libvirt.VIR_DOMAIN_EVENT_STOPPED:
                reason = _STOPPED_REASONS.get(detail, "")
                if detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_SAVED:
                    state = PowerState.SAVED
            try:
                callback(DomainEvent(uuid=dom.UUIDString(), state=state, reason=reason))
            except Exception:
                log.exception("domain event handler failed")

        with _errors("subscribing to domain events"):
            handle = self._conn.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, None)
        if on_close is not None:
            try:
                self._conn.registerCloseCallback(lambda *_a: on_close(), None)
            except libvirt.libvirtError:
                pass  # not every driver reports closes; the reconcile loop notices anyway
        return handle

    def unsubscribe_events(self, handle: object) -> None:
        try:
            self._conn.domainEventDeregisterAny(handle)
        except libvirt.libvirtError:
            pass

    # ---------------------------------------------------------------- storage
    def _pool_info(self, pool) -> PoolInfo:
        _state, capacity, allocation, available = pool.info()
        path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path") or ""
        volumes = []
        for vol in pool.listAllVolumes(0):
            _type, vcap, valloc = vol.info()
            volumes.append(
                VolumeInfo(
                    name=vol.name(),
                    path=vol.path(),
                    capacity_bytes=vcap,
                    allocation_bytes=valloc,
                    format=_volume_format(vol),
                )
            )
        return PoolInfo(
            name=pool.name(),
            path=path,
            capacity_bytes=capacity,
            allocation_bytes=allocation,
            available_bytes=available,
            volumes=sorted(volumes, key=lambda v: v.name),
        )

    def pool_define(self, spec: PoolSpec, *, build: bool = True) -> PoolInfo:  # noqa: C901
        """Idempotent. ``build=False`` requires the directory to exist already
        (a repository path that is missing is an error, not something to create)."""
        try:
            document = xmlbuild.pool_xml(spec)
        except ValueError as exc:
            raise OperationFailed(str(exc)) from exc
        created = False
        try:
            pool = self._conn.storagePoolLookupByName(spec.name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                raise _translate(exc, f"storage pool {spec.name}") from exc
            with _errors(f"defining storage pool {spec.name}"):
                pool = self._conn.storagePoolDefineXML(document, 0)
            created = True
        try:
            path = ET.fromstring(pool.XMLDesc(0)).findtext("./target/path")
            if path.rstrip("/") != spec.path.rstrip("/"):
                raise OperationFailed(f"storage pool {spec.name} already exists at {path}")
            with _errors(f"starting storage pool {spec.name} at {spec.path}"):
                if pool.isActive():
                    try:
                        pool.refresh(0)
                    except libvirt.libvirtError:
                        pool.destroy()  # its directory went away: build it again below
                if not pool.isActive():
                    if build:
                        pool.build(0)
                    pool.create(0)
                pool.setAutostart(1)
                pool.refresh(0)
                return self._pool_info(pool)
        except DriverError:
            if created:
                # Nothing half made: forget the pool we just defined.
                try:
                    if pool.isActive():
                        pool.destroy()
                    pool.undefine()
                except libvirt.libvirtError:
                    pass
            raise

    def pool_refresh(self, name: str) -> PoolInfo:
        pool = self._pool(name)
        with _errors(f"refreshing storage pool {name}"):
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
            return self._pool_info(pool)

    def pool_undefine(self, name: str) -> None:
        try:
            pool = self._conn.storagePoolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_POOL:
                return
            raise _translate(exc, f"storage pool {name}") from exc
        with _errors(f"removing storage pool {name}"):
            if pool.isActive():
                pool.destroy()
            pool.undefine()

    @staticmethod
    def _vol_info(vol) -> VolumeInfo:
        _type, capacity, allocation = vol.info()
        return VolumeInfo(
            name=vol.name(),
            path=vol.path(),
            capacity_bytes=capacity,
            allocation_bytes=allocation,
            format=_volume_format(vol),
        )

    def volume_create(
        self, pool: str, name: str, capacity_bytes: int, *, format: str = "qcow2", sparse: bool = True
    ) -> VolumeInfo:
        p = self._pool(pool)
        document = xmlbuild.volume_xml(
            name=name, capacity_bytes=capacity_bytes, format=format, allocation_bytes=0 if sparse else capacity_bytes
        )
        with _errors(f"creating volume {name} in {pool}"):
            vol = p.createXML(document, _prealloc_flags(format, sparse))
            return self._vol_info(vol)

    def volume_info(self, pool: str, name: str) -> VolumeInfo:
        vol = self._volume(pool, name)
        with _errors(f"reading volume {name}"):
            return self._vol_info(vol)

    def volume_delete(self, pool: str, name: str) -> None:
        p = self._pool(pool)
        try:
            p.refresh(0)
            vol = p.storageVolLookupByName(name)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return
            raise _translate(exc, f"volume {name} in {pool}") from exc
        with _errors(f"deleting volume {name}"):
            vol.delete(0)

    def volume_resize(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        vol = self._volume(pool, name)
        with _errors(f"resizing volume {name}"):
            if capacity_bytes < vol.info()[1]:
                raise OperationFailed(f"volume {name} cannot shrink")
            vol.resize(capacity_bytes, 0)
            return self._vol_info(vol)

    def volume_clone(
        self, pool: str, source: str, target_pool: str, target: str, *, clone_type: str, format: str = "qcow2"
    ) -> VolumeInfo:
        src = self._volume(pool, source)
        dst_pool = self._pool(target_pool)
        with _errors(f"cloning {source} to {target}"):
            capacity = src.info()[1]
            if clone_type == "thin":
                # A qcow2 overlay on the source (ext4 here has no reflink).
                document = xmlbuild.volume_xml(
                    name=target,
                    capacity_bytes=capacity,
                    format="qcow2",
                    backing_path=src.path(),
                    backing_format=_volume_format(src),
                )
                vol = dst_pool.createXML(document, 0)
            elif clone_type in ("sparse", "non_sparse"):
                allocation = capacity if clone_type == "non_sparse" else 0
                document = xmlbuild.volume_xml(
                    name=target, capacity_bytes=capacity, format=format, allocation_bytes=allocation
                )
                vol = dst_pool.createXMLFrom(document, src, _prealloc_flags(format, clone_type == "sparse"))
            else:
                raise OperationFailed(f"unknown clone type {clone_type}")
            return self._vol_info(vol)

    def volume_upload(
        self, pool: str, name: str, fileobj, size: int, *, progress: Callable[[int], None] | None = None
    ) -> VolumeInfo:
        p = self._pool(pool)
        with _errors(f"creating volume {name} in {pool}"):
            vol = p.createXML(xmlbuild.volume_xml(name=name, capacity_bytes=max(size, 1), format="raw"), 0)
        stream = None
        try:
            with _errors(f"uploading {name}"):
                stream = self._conn.newStream(0)
                vol.upload(stream, 0, size, 0)
                done = 0
                while done < size:
                    data = fileobj.read(min(_CHUNK, size - done))
                    if not data:
                        raise OperationFailed(f"upload of {name} ended after {done} of {size} bytes")
                    view = memoryview(data)
                    while view:
                        sent = stream.send(bytes(view))
                        view = view[sent:]
                    done += len(data)
                    if progress:
                        progress(done)
                stream.finish()
                stream = None
                p.refresh(0)
                return self._vol_info(p.storageVolLookupByName(name))
        except BaseException:
            if stream is not None:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
            try:
                vol.delete(0)
            except libvirt.libvirtError:
                pass
            raise

    # ---------------------------------------------------------------- lifecycle
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
