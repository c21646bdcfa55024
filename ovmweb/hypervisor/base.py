"""The Driver interface: everything ovmweb asks of a hypervisor server.

Methods take and return the dataclasses below and raise only ``DriverError``
subclasses. ``ovmweb/hypervisor/libvirt/`` is the one implementation and the
only package that imports libvirt. Drivers hold connections; models never do.
"""

from __future__ import annotations

import abc
from collections.abc import Collection
from dataclasses import dataclass, field
from enum import Enum

from ovmweb.errors import DriverError, OperationFailed


class PowerState(str, Enum):
    """What the hypervisor says of a domain (mapped to VmStatus by the services)."""

    RUNNING = "running"
    PAUSED = "paused"  # suspended in memory
    SHUTOFF = "shutoff"
    SHUTTING_DOWN = "shutting_down"
    SAVED = "saved"  # shut off with a managed-save (suspend) file
    CRASHED = "crashed"
    ABSENT = "absent"


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    host_uuid: str
    cpu_vendor: str
    cpu_family: int | None
    cpu_model: int | None
    cpu_model_name: str
    cpu_cores: int
    memory_mib: int
    libvirt_version: str
    qemu_version: str
    domain_types: list[str]  # usable, proven: ["kvm", "qemu"] or ["qemu"]
    free_memory_mib: int = 0


@dataclass(frozen=True)
class DiskSpec:
    """One disk or CD-ROM drive of a domain.

    ``format`` is the format ovmweb recorded for the file, given to QEMU explicitly: an
    image's format is never probed from its header (a guest writes the header of a raw
    disk). A CD-ROM holds an ISO image, which is raw.
    """

    path: str  # file on the server ("" for an empty CD-ROM drive)
    device: str = "disk"  # "disk" | "cdrom"
    bus: str = "virtio"  # "virtio" | "ide" | "sata"
    format: str = "qcow2"  # "qcow2" | "raw" | "vmdk" (xml.DISK_FORMATS)
    readonly: bool = False
    shareable: bool = False


@dataclass(frozen=True)
class NicSpec:
    mac: str
    model: str = "virtio"  # "virtio" | "e1000" | "rtl8139"
    network: str = ""  # libvirt network name, or
    bridge: str = ""  # host bridge; neither = user-mode networking


@dataclass(frozen=True)
class DomainSpec:
    """Everything needed to define a domain on a server."""

    name: str
    uuid: str
    domain_type: str  # seed domain type: HVM | PVHVM | PVM
    virt_type: str  # libvirt domain type: "kvm" or "qemu" (TCG)
    vcpus: int
    max_vcpus: int
    memory_mib: int
    max_memory_mib: int
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    boot_order: list[str] = field(default_factory=lambda: ["disk"])  # "disk" | "cdrom" | "network"
    vnc_port: int | None = None
    serial_port: int | None = None
    keymap: str = "en-us"
    mouse_device: str = "default"
    huge_pages: bool = False
    cpu_pinning: str = ""
    kernel: str = ""  # PVM: direct kernel boot
    initrd: str = ""
    kernel_args: str = ""
    messages_channel: bool = True  # virtio-serial channel for guest messages
    description: str = ""


@dataclass(frozen=True)
class DomainInfo:
    uuid: str
    name: str
    state: PowerState
    vcpus: int = 0
    memory_mib: int = 0
    has_managed_save: bool = False


@dataclass(frozen=True)
class PoolSpec:
    name: str
    path: str
    backend: str = "dir"  # "dir" | "netfs"
    nfs_server: str = ""
    nfs_export: str = ""


@dataclass(frozen=True)
class PoolInfo:
    name: str
    path: str
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int
    volumes: list[VolumeInfo] = field(default_factory=list)


@dataclass(frozen=True)
class VolumeInfo:
    """A volume as libvirt reports it.

    ``format`` is libvirt's reading of the file's header (its directory pools probe every
    file), so it is only a claim: never the format to open a disk with, only something to
    compare with the recorded one.
    """

    name: str  # path relative to the pool, e.g. "VirtualDisks/abc.qcow2"
    path: str
    capacity_bytes: int
    allocation_bytes: int
    format: str = "raw"


@dataclass(frozen=True)
class BackupResult:
    """A finished point-in-time copy of a running domain's disks; ``quiesced`` says whether
    the guest agent froze the file systems (else the copy is crash-consistent)."""

    quiesced: bool


@dataclass(frozen=True)
class DomainEvent:
    """A lifecycle event pushed by the server (libvirt domain events)."""

    uuid: str
    state: PowerState
    reason: str = ""


@dataclass(frozen=True)
class DomainStats:
    """One running domain's counters from libvirt's bulk domain stats.

    Counters are cumulative since the domain started (the reader turns them into
    rates); a memory figure is None where the hypervisor or the guest's balloon
    driver does not report it."""

    uuid: str
    cpu_time_ns: int | None = None
    vcpus: int = 0
    memory_actual_kib: int | None = None  # balloon.current: what the guest has now
    memory_unused_kib: int | None = None  # balloon.unused: free inside the guest (balloon driver)
    memory_available_kib: int | None = None  # balloon.available: total seen by the guest
    memory_rss_kib: int | None = None  # resident on the host
    disk_read_bytes: int = 0
    disk_write_bytes: int = 0
    disk_read_ops: int = 0
    disk_write_ops: int = 0
    net_rx_bytes: int = 0
    net_tx_bytes: int = 0


@dataclass(frozen=True)
class HostStats:
    """A server's CPU counters (cumulative, ns) and memory now."""

    cpu_busy_ns: int
    cpu_total_ns: int
    memory_total_kib: int
    memory_free_kib: int  # free, buffers and cache: what guests could still get


@dataclass(frozen=True)
class PoolUsage:
    capacity_bytes: int
    allocation_bytes: int
    available_bytes: int


@dataclass(frozen=True)
class ServerStats:
    """One reading of a server: itself, its running domains, the pools asked for (those it has)."""

    host: HostStats
    domains: list[DomainStats] = field(default_factory=list)
    pools: dict[str, PoolUsage] = field(default_factory=dict)


class Driver(abc.ABC):
    """One hypervisor server. Implementations are safe to call from one thread at a time."""

    @abc.abstractmethod
    def host_facts(self) -> HostFacts: ...

    @abc.abstractmethod
    def define(self, spec: DomainSpec) -> None: ...

    @abc.abstractmethod
    def undefine(self, uuid: str) -> None: ...

    @abc.abstractmethod
    def start(self, uuid: str) -> None: ...

    @abc.abstractmethod
    def shutdown(self, uuid: str) -> None:
        """Ask the guest to power off (ACPI); the state follows the guest."""

    @abc.abstractmethod
    def destroy(self, uuid: str) -> None:
        """Pull the plug; succeeds if the domain is already off or absent."""

    @abc.abstractmethod
    def reboot(self, uuid: str) -> None: ...

    @abc.abstractmethod
    def suspend(self, uuid: str) -> None: ...

    @abc.abstractmethod
    def resume(self, uuid: str) -> None: ...

    @abc.abstractmethod
    def set_vcpus(self, uuid: str, count: int) -> None: ...

    @abc.abstractmethod
    def set_memory(self, uuid: str, memory_mib: int) -> None: ...

    @abc.abstractmethod
    def domain_info(self, uuid: str) -> DomainInfo: ...

    @abc.abstractmethod
    def list_domains(self) -> list[DomainInfo]: ...

    @abc.abstractmethod
    def close(self) -> None: ...


class StorageDriver:
    """Storage, migration and events of one server (mixed into ``Driver`` implementations).

    Volume names are file names inside the pool's directory; ovmweb defines one
    pool per repository sub-directory (VirtualDisks/, ISOs/) because libvirt
    lists only the top level of a ``dir`` pool.
    """

    def probe_kvm(self, timeout: float = 10.0) -> bool:
        """True only if a probe domain really ran under KVM within ``timeout`` seconds."""
        raise OperationFailed("not supported by this driver")

    def pool_define(self, spec: PoolSpec) -> PoolInfo:
        """Define (idempotently), build, start and autostart a pool."""
        raise OperationFailed("not supported by this driver")

    def pool_refresh(self, name: str) -> PoolInfo:
        raise OperationFailed("not supported by this driver")

    def pool_undefine(self, name: str) -> None:
        """Forget the pool; the files stay on disk."""
        raise OperationFailed("not supported by this driver")

    def volume_create(
        self, pool: str, name: str, capacity_bytes: int, *, format: str = "qcow2", sparse: bool = True
    ) -> VolumeInfo:
        raise OperationFailed("not supported by this driver")

    def volume_info(self, pool: str, name: str) -> VolumeInfo:
        raise OperationFailed("not supported by this driver")

    def volume_delete(self, pool: str, name: str) -> None:
        """Delete a volume; succeeds if it is already gone."""
        raise OperationFailed("not supported by this driver")

    def volume_resize(self, pool: str, name: str, capacity_bytes: int) -> VolumeInfo:
        raise OperationFailed("not supported by this driver")

    def volume_clone(
        self,
        pool: str,
        source: str,
        target_pool: str,
        target: str,
        *,
        clone_type: str,
        source_format: str,
        format: str = "qcow2",
    ) -> VolumeInfo:
        """clone_type: "thin" (qcow2 overlay on the source), "sparse" or "non_sparse" (full copy into
        ``format``). ``source_format`` is the source's recorded format: a thin clone names it as its
        backing format, a copy is refused when libvirt's reading of the source's header disagrees."""
        raise OperationFailed("not supported by this driver")

    def volume_protect(self, pool: str, name: str) -> bool:
        """Best effort: make a thin-clone base read-only; True when it was."""
        return False

    def disks_backup(self, uuid: str, copies: dict[str, str], *, timeout: float = 3600.0, check_abort=None):
        """Copy disks of a running domain as they are at one instant into new standalone qcow2
        files (``copies``: source path -> new path); returns a ``BackupResult`` once done."""
        raise OperationFailed("not supported by this driver")

    def volume_upload(self, pool: str, name: str, fileobj, size: int, *, progress=None) -> VolumeInfo:
        """Stream ``size`` bytes of ``fileobj`` into a new raw volume; ``progress(done_bytes)``."""
        raise OperationFailed("not supported by this driver")

    def domain_xml(self, uuid: str) -> str:
        raise OperationFailed("not supported by this driver")

    def migrate(
        self, uuid: str, target: Driver, *, live: bool = True, unsafe: bool = False, copy_storage: bool = False
    ) -> None:
        raise OperationFailed("not supported by this driver")

    def attach_device(self, uuid: str, device: DiskSpec | NicSpec, *, domain_type: str) -> str:
        """Hot-plug a disk, CD-ROM or NIC into the running domain and its persistent
        definition (``VIR_DOMAIN_AFFECT_LIVE|CONFIG``); returns the disk's target or the NIC's MAC."""
        raise OperationFailed("not supported by this driver")

    def detach_device(self, uuid: str, device: DiskSpec | NicSpec) -> None:
        """Hot-unplug the disk with ``device.path`` or the NIC with ``device.mac``, live and persistently."""
        raise OperationFailed("not supported by this driver")

    def change_media(self, uuid: str, *, current_path: str, new_path: str) -> None:
        """Insert (``new_path``) or eject (``""``) the medium of the CD-ROM drive now holding ``current_path``
        (``""``: the first empty drive), live and persistently."""
        raise OperationFailed("not supported by this driver")

    def migrate_with_storage(self, uuid: str, target: Driver, *, disk_map: dict[str, str]) -> None:
        """Live-migrate copying the disks (``VIR_MIGRATE_NON_SHARED_DISK``): each source path in
        ``disk_map`` is copied into the target path, which must already exist on the target."""
        raise OperationFailed("not supported by this driver")

    def send_messages(
        self, uuid: str, messages: list[tuple[str, str]], *, timeout: float = 5.0, logged: Collection[str] = ()
    ) -> dict[str, str]:
        """Send key/value pairs, in order, to the guest agent on the messages channel
        (guest/ovmweb-guest-agent); {key: "ok"|"ignored"}, "ok" only for a pair the agent
        acknowledged. Keys in ``logged`` may be written to the guest's message log; the
        others (unlogged and hidden values) never are.

        Raises ``AgentTimeout`` if no agent answers the ping within ``timeout`` (the caller
        fails the job: nothing was delivered).
        """
        raise OperationFailed("not supported by this driver")

    def stats(self, pools: Collection[str] = ()) -> ServerStats:
        """Read the server, all its running domains in one bulk call (never one call per
        domain) and the named storage pools (refreshed; a pool it does not have is left out)."""
        raise OperationFailed("not supported by this driver")

    def subscribe_events(self, callback) -> object:
        """Call ``callback(DomainEvent)`` from the event thread for every lifecycle event; returns a handle."""
        raise OperationFailed("not supported by this driver")

    def unsubscribe_events(self, handle: object) -> None:
        raise OperationFailed("not supported by this driver")

    def is_alive(self) -> bool:
        return True


class AgentTimeout(DriverError):
    """The guest agent did not answer in time; a message may still be applied later."""
