"""The Driver interface: everything ovmweb asks of a hypervisor server.

Methods take and return the dataclasses below and raise only ``DriverError``
subclasses. ``ovmweb/hypervisor/libvirt.py`` is the one implementation and the
only module that imports libvirt. Drivers hold connections; models never do.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from enum import Enum


class DriverError(Exception):
    """Any failure of the hypervisor layer."""


class ConnectionFailed(DriverError):
    """The server could not be reached (network, SSH, libvirtd down)."""


class HostKeyMismatch(ConnectionFailed):
    """The server offered a host key other than the pinned one."""

    def __init__(self, message: str, *, offered_fingerprint: str):
        super().__init__(message)
        self.offered_fingerprint = offered_fingerprint


class DomainNotFound(DriverError):
    pass


class OperationFailed(DriverError):
    pass


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
    path: str  # file on the server
    device: str = "disk"  # "disk" | "cdrom"
    bus: str = "virtio"  # "virtio" | "ide" | "sata"
    format: str = "qcow2"  # "qcow2" | "raw"
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
    volumes: list["VolumeInfo"] = field(default_factory=list)


@dataclass(frozen=True)
class VolumeInfo:
    name: str  # path relative to the pool, e.g. "VirtualDisks/abc.qcow2"
    path: str
    capacity_bytes: int
    allocation_bytes: int
    format: str = "raw"


@dataclass(frozen=True)
class DomainEvent:
    """A lifecycle event pushed by the server (libvirt domain events)."""

    uuid: str
    state: PowerState
    reason: str = ""


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
