"""Statuses and kinds of the inventory, and the one VM state/action table (seed 7.8)."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class Architecture(models.TextChoices):
    X86 = "X86", _("x86")
    SPARC = "SPARC", _("SPARC")


class Transport(models.TextChoices):
    LOCAL = "local", _("Local (this machine)")
    SSH = "ssh", _("SSH")


class ServerStatus(models.TextChoices):
    DISCOVERING = "DISCOVERING", _("Discovering")
    RUNNING = "RUNNING", _("Running")
    UNREACHABLE = "UNREACHABLE", _("Unreachable")
    MAINTENANCE = "MAINTENANCE", _("Maintenance")


class RepositoryKind(models.TextChoices):
    LOCAL = "LOCAL", _("Local to one server")
    SHARED = "SHARED", _("Shared (NFS or cluster file system)")


class RepositoryBackend(models.TextChoices):
    DIR = "dir", _("Directory")
    NETFS = "netfs", _("NFS")


class DomainType(models.TextChoices):
    HVM = "HVM", _("Hardware virtualized (HVM)")
    PVHVM = "PVHVM", _("Hardware virtualized, paravirtualized drivers (PVHVM)")
    PVM = "PVM", _("Paravirtualized (PVM)")
    SPARC = "SPARC", _("Oracle VM Server for SPARC")


class OsType(models.TextChoices):
    ORACLE_LINUX_5 = "OL5", _("Oracle Linux 5")
    ORACLE_LINUX_6 = "OL6", _("Oracle Linux 6")
    ORACLE_LINUX_7 = "OL7", _("Oracle Linux 7")
    RHEL_6 = "RHEL6", _("Red Hat Enterprise Linux 6")
    RHEL_7 = "RHEL7", _("Red Hat Enterprise Linux 7")
    SOLARIS_X86 = "SOLARIS_X86", _("Oracle Solaris (x86)")
    SOLARIS_SPARC = "SOLARIS_SPARC", _("Oracle Solaris (SPARC)")
    WINDOWS = "WINDOWS", _("Microsoft Windows")
    OTHER_LINUX = "OTHER_LINUX", _("Other Linux")
    OTHER = "OTHER", _("Other")


class VmStatus(models.TextChoices):
    STARTING = "STARTING", _("Starting")
    RUNNING = "RUNNING", _("Running")
    STOPPING = "STOPPING", _("Stopping")
    STOPPED = "STOPPED", _("Stopped")
    SUSPENDED = "SUSPENDED", _("Suspended")
    TEMPLATE = "TEMPLATE", _("Template")


# Named subsets.
VmStatus.ACTIVE = frozenset({VmStatus.STARTING, VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.SUSPENDED})
VmStatus.INACTIVE = frozenset({VmStatus.STOPPED, VmStatus.TEMPLATE})


class VmAction(models.TextChoices):
    START = "start", _("Start")
    RESTART = "restart", _("Restart")
    STOP = "stop", _("Stop")
    KILL = "kill", _("Kill")
    SUSPEND = "suspend", _("Suspend")
    RESUME = "resume", _("Resume")
    MIGRATE = "migrate", _("Migrate (live)")


# Seed 7.8, "Relationship between Virtual Machine States and Actions": the states an
# action may start from, and the state the VM is put in at once when it is accepted.
# KILL runs from any state except TEMPLATE (a template never leaves TEMPLATE).
VM_ACTION_TABLE: dict[str, tuple[frozenset[str], str | None]] = {
    VmAction.START: (frozenset({VmStatus.STOPPED}), VmStatus.STARTING),
    VmAction.RESTART: (frozenset({VmStatus.RUNNING}), VmStatus.STOPPING),
    VmAction.STOP: (frozenset({VmStatus.RUNNING}), VmStatus.STOPPING),
    VmAction.KILL: (
        frozenset({VmStatus.STARTING, VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.STOPPED, VmStatus.SUSPENDED}),
        VmStatus.STOPPED,
    ),
    VmAction.SUSPEND: (frozenset({VmStatus.RUNNING}), VmStatus.STOPPING),
    VmAction.RESUME: (frozenset({VmStatus.SUSPENDED}), None),
    VmAction.MIGRATE: (frozenset({VmStatus.RUNNING}), None),
}


class DiskSlotKind(models.TextChoices):
    DISK = "DISK", _("Virtual disk")
    CDROM = "CDROM", _("CD/DVD (ISO)")
    EMPTY = "EMPTY", _("Empty CD/DVD drive")


class DiskFormat(models.TextChoices):
    RAW = "raw", _("Raw")
    QCOW2 = "qcow2", _("QCOW2")
    # An imported appliance's disk as it came (OVAs carry VMDKs); copies of it are qcow2.
    VMDK = "vmdk", _("VMDK")


class CloneType(models.TextChoices):
    THIN = "THIN", _("Thin clone")
    SPARSE = "SPARSE", _("Sparse copy")
    NON_SPARSE = "NON_SPARSE", _("Non-sparse copy")


class NetworkRole(models.TextChoices):
    MANAGEMENT = "MANAGEMENT", _("Management")
    LIVE_MIGRATE = "LIVE_MIGRATE", _("Live migrate")
    CLUSTER_HEARTBEAT = "CLUSTER_HEARTBEAT", _("Cluster heartbeat")
    VIRTUAL_MACHINE = "VIRTUAL_MACHINE", _("Virtual machine")
    STORAGE = "STORAGE", _("Storage")


class Keymap(models.TextChoices):
    EN_US = "en-us", "en-us"
    EN_GB = "en-gb", "en-gb"
    DE = "de", "de"
    FR = "fr", "fr"
    ES = "es", "es"
    IT = "it", "it"
    JA = "ja", "ja"
    NL = "nl", "nl"
    PT = "pt", "pt"
    SV = "sv", "sv"


class MouseDevice(models.TextChoices):
    DEFAULT = "default", _("OS default")
    PS2 = "ps2", _("PS/2 mouse")
    USB_MOUSE = "usb-mouse", _("USB mouse")
    USB_TABLET = "usb-tablet", _("USB tablet")


class BootDevice(models.TextChoices):
    DISK = "disk", _("Disk")
    CDROM = "cdrom", _("CD/DVD")
    NETWORK = "network", _("PXE / network")


class MessageResult(models.TextChoices):
    PENDING = "PENDING", _("Pending")
    DELIVERED = "DELIVERED", _("Delivered")
    UNKNOWN = "UNKNOWN", _("Unknown (no acknowledgement)")
    FAILED = "FAILED", _("Failed")


class VnicModel(models.TextChoices):
    E1000 = "e1000", _("Emulated e1000")
    RTL8139 = "rtl8139", _("Emulated rtl8139")
    VIRTIO = "virtio", _("Paravirtual (virtio)")


class DiskBus(models.TextChoices):
    IDE = "ide", _("IDE (emulated)")
    SATA = "sata", _("SATA (emulated)")
    VIRTIO = "virtio", _("Paravirtual (virtio)")


PARAVIRTUAL_DOMAIN_TYPES = frozenset({DomainType.PVHVM, DomainType.PVM})
