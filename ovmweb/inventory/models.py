"""The whole inventory. Models hold data and database constraints only: every
write goes through ``ovmweb.inventory.services`` and no model holds a connection."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from . import choices

MAC_RE = r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$"
mac_validator = RegexValidator(MAC_RE, _("Enter a MAC address like 00:21:f6:00:00:01 (lower case)."))
NAME_MAX = 128
# A server's address and SSH user go into ssh's command line and known_hosts lines (tunnels/ssh.py):
# a DNS name (RFC 1123) or an IP address, a POSIX user name; no spaces, newlines or options.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = rf"^(?:(?=[^\n]{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?|[0-9A-Fa-f]*:[0-9A-Fa-f:.]+)\Z"
hostname_validator = RegexValidator(HOSTNAME_RE, _("Enter a host name (RFC 1123) or an IP address."))
ssh_user_validator = RegexValidator(
    r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}\Z", _("Enter a user name: letters, digits, '_', '.', '-'.")
)


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ProcessorCompatibilityGroup(TimestampedModel):
    name = models.CharField(max_length=NAME_MAX, unique=True)
    description = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name


class ServerPool(TimestampedModel):
    name = models.CharField(max_length=NAME_MAX, unique=True)
    architecture = models.CharField(
        max_length=8, choices=choices.Architecture.choices, default=choices.Architecture.X86
    )
    description = models.TextField(blank=True)
    # Pool policies (seed 6.12), run by the monitor (ovmweb/monitor/policies.py). DRS: a server
    # above ``drs_threshold_percent`` CPU load or memory use for ``drs_period_s`` has a VM
    # live-migrated away. DPM only reports which servers could be emptied (no IPMI here).
    drs_enabled = models.BooleanField(default=False)
    drs_threshold_percent = models.PositiveSmallIntegerField(
        default=80, validators=[MinValueValidator(10), MaxValueValidator(100)]
    )
    drs_period_s = models.PositiveIntegerField(default=300, validators=[MinValueValidator(10)])
    dpm_enabled = models.BooleanField(default=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Server(TimestampedModel):
    """An Oracle VM Server: a host running libvirtd, reached locally or over SSH."""

    name = models.CharField(max_length=NAME_MAX, unique=True)
    hostname = models.CharField(max_length=255, validators=[hostname_validator])
    transport = models.CharField(max_length=8, choices=choices.Transport.choices, default=choices.Transport.SSH)
    ssh_port = models.PositiveIntegerField(default=22, validators=[MinValueValidator(1), MaxValueValidator(65535)])
    ssh_user = models.CharField(max_length=64, default="root", validators=[ssh_user_validator])
    # SHA256 fingerprint as OpenSSH prints it ("SHA256:base64"); the host key is
    # pinned to it and never learned on first use.
    host_key_fingerprint = models.CharField(max_length=128, blank=True)
    host_key = models.TextField(blank=True, help_text=_("The pinned public host key (type and base64)."))
    # Fernet token of a JSON {"password"|"private_key"}; never shown again.
    credentials_encrypted = models.TextField(blank=True, editable=False)
    status = models.CharField(
        max_length=16, choices=choices.ServerStatus.choices, default=choices.ServerStatus.DISCOVERING
    )
    server_pool = models.ForeignKey(
        ServerPool, null=True, blank=True, on_delete=models.SET_NULL, related_name="servers"
    )
    compatibility_group = models.ForeignKey(
        ProcessorCompatibilityGroup, null=True, blank=True, on_delete=models.SET_NULL, related_name="servers"
    )
    host_uuid = models.CharField(max_length=64, blank=True)
    cpu_vendor = models.CharField(max_length=64, blank=True)
    cpu_family = models.PositiveIntegerField(null=True, blank=True)
    cpu_model = models.PositiveIntegerField(null=True, blank=True)
    cpu_model_name = models.CharField(max_length=255, blank=True)
    cpu_cores = models.PositiveIntegerField(default=0)
    memory_mib = models.PositiveBigIntegerField(default=0)
    libvirt_version = models.CharField(max_length=32, blank=True)
    qemu_version = models.CharField(max_length=32, blank=True)
    # Usable libvirt domain types, proven by a probe: ["kvm", "qemu"] or ["qemu"].
    domain_types = models.JSONField(default=list, blank=True)
    inbound_migration_lock = models.BooleanField(default=False)
    # Put in maintenance by an administrator: it stays so while the server is UNREACHABLE and
    # after it answers again, until it is taken out (the status shows MAINTENANCE when reachable).
    maintenance = models.BooleanField(default=False, editable=False)
    # libvirt's lock manager (lockd + virtlockd) guards every disk there: QEMU cannot open a
    # disk a guest on another server holds. Read at discovery; HA needs it (services/pools.py).
    disk_leases = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    status_message = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["hostname", "ssh_port"], name="server_unique_endpoint")]

    def __str__(self) -> str:
        return self.name


class Repository(TimestampedModel):
    """A storage repository: a libvirt storage pool laid out like Oracle VM's."""

    name = models.CharField(max_length=NAME_MAX, unique=True)
    kind = models.CharField(max_length=8, choices=choices.RepositoryKind.choices, default=choices.RepositoryKind.LOCAL)
    backend = models.CharField(
        max_length=8, choices=choices.RepositoryBackend.choices, default=choices.RepositoryBackend.DIR
    )
    path = models.CharField(max_length=1024, help_text=_("Mount point / directory on the servers."))
    nfs_server = models.CharField(max_length=255, blank=True)
    nfs_export = models.CharField(max_length=1024, blank=True)
    # A local repository lives on exactly one server.
    server = models.ForeignKey(
        Server, null=True, blank=True, on_delete=models.PROTECT, related_name="local_repositories"
    )
    server_pools = models.ManyToManyField(ServerPool, blank=True, related_name="repositories")
    capacity_bytes = models.PositiveBigIntegerField(default=0)
    allocation_bytes = models.PositiveBigIntegerField(default=0)
    available_bytes = models.PositiveBigIntegerField(default=0)
    refreshed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        constraints = [
            models.CheckConstraint(
                condition=Q(kind=choices.RepositoryKind.SHARED) | Q(server__isnull=False),
                name="repository_local_has_server",
            ),
            models.CheckConstraint(
                condition=~Q(backend=choices.RepositoryBackend.NETFS) | ~Q(nfs_server=""),
                name="repository_netfs_has_server",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Network(TimestampedModel):
    name = models.CharField(max_length=NAME_MAX, unique=True)
    bridge = models.CharField(max_length=15, blank=True, help_text=_("Host bridge, e.g. br0"))
    libvirt_network = models.CharField(max_length=64, blank=True, help_text=_("libvirt network name, e.g. default"))
    vlan_id = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(4094)]
    )
    roles = models.JSONField(default=list, blank=True)
    server_pools = models.ManyToManyField(ServerPool, blank=True, related_name="networks")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class MacAddressRange(models.Model):
    """The one range VNIC MACs are allocated from (a singleton, id=1)."""

    start = models.CharField(max_length=17, validators=[mac_validator])
    end = models.CharField(max_length=17, validators=[mac_validator])

    def __str__(self) -> str:
        return f"{self.start} - {self.end}"


class IsoFile(TimestampedModel):
    name = models.CharField(max_length=255)
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="iso_files")
    size_bytes = models.PositiveBigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["repository", "name"], name="iso_unique_name_per_repo")]

    def __str__(self) -> str:
        return self.name


class VirtualDisk(TimestampedModel):
    name = models.CharField(max_length=255)
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="virtual_disks")
    # Volume file name inside VirtualDisks/ (the uuid keeps names free of collisions).
    volume = models.CharField(max_length=255, unique=True, editable=False, default="")
    size_bytes = models.PositiveBigIntegerField(validators=[MinValueValidator(1)])
    allocation_bytes = models.PositiveBigIntegerField(default=0)
    format = models.CharField(max_length=8, choices=choices.DiskFormat.choices, default=choices.DiskFormat.QCOW2)
    sparse = models.BooleanField(default=True)
    shareable = models.BooleanField(default=False)
    backing_disk = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="thin_clones"
    )
    # A frozen image that thin clones stand on (the source disk's file at the clone): read-only,
    # attached to no VM, removed with its last child (services/disk_copies.py).
    thin_base = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VirtualMachine(TimestampedModel):
    name = models.CharField(max_length=NAME_MAX)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    description = models.TextField(blank=True)
    domain_type = models.CharField(max_length=8, choices=choices.DomainType.choices, default=choices.DomainType.HVM)
    status = models.CharField(
        max_length=16, choices=choices.VmStatus.choices, default=choices.VmStatus.STOPPED, editable=False
    )
    server_pool = models.ForeignKey(ServerPool, null=True, blank=True, on_delete=models.PROTECT, related_name="vms")
    server = models.ForeignKey(Server, null=True, blank=True, on_delete=models.SET_NULL, related_name="vms")
    repository = models.ForeignKey(Repository, null=True, blank=True, on_delete=models.PROTECT, related_name="vms")
    os_type = models.CharField(max_length=16, choices=choices.OsType.choices, default=choices.OsType.OTHER_LINUX)
    # The guest kernel release, e.g. "2.6.39-400.211.1.el6uek": decides hot CPU changes (seed 7.14).
    guest_kernel = models.CharField(max_length=64, blank=True)
    pv_drivers_installed = models.BooleanField(
        default=False, help_text=_("Paravirtual drivers installed in the guest (Windows).")
    )
    vcpus = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    max_vcpus = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1), MaxValueValidator(128)])
    memory_mib = models.PositiveIntegerField(default=512, validators=[MinValueValidator(16)])
    max_memory_mib = models.PositiveIntegerField(default=512, validators=[MinValueValidator(16)])
    huge_pages = models.BooleanField(default=False)
    keymap = models.CharField(max_length=8, choices=choices.Keymap.choices, default=choices.Keymap.EN_US)
    mouse_device = models.CharField(
        max_length=16, choices=choices.MouseDevice.choices, default=choices.MouseDevice.DEFAULT
    )
    boot_order = models.JSONField(default=list, blank=True)
    ha_enabled = models.BooleanField(default=False)
    # Hard partitioning (seed 7.16), a cpuset like "0-1,4"; blank = not pinned.
    cpu_pinning = models.CharField(max_length=128, blank=True)
    # PVM network boot path: URL of the mounted install tree (NFS, HTTP or FTP).
    pvm_boot_url = models.CharField(max_length=1024, blank=True)
    kernel_args = models.CharField(max_length=1024, blank=True)
    # Runtime parameters saved while running; applied at the next stop+start (seed 7.9).
    pending_changes = models.JSONField(default=dict, blank=True, editable=False)
    vnc_port = models.PositiveIntegerField(null=True, blank=True, editable=False)
    serial_port = models.PositiveIntegerField(null=True, blank=True, editable=False)
    origin = models.CharField(max_length=255, blank=True, help_text=_("What this VM was created from."))

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("virtual machine")
        constraints = [
            models.CheckConstraint(condition=Q(vcpus__lte=models.F("max_vcpus")), name="vm_vcpus_le_max"),
            models.CheckConstraint(condition=Q(memory_mib__lte=models.F("max_memory_mib")), name="vm_memory_le_max"),
            models.UniqueConstraint(
                fields=["server", "vnc_port"], condition=Q(vnc_port__isnull=False), name="vm_unique_vnc_port"
            ),
            models.UniqueConstraint(
                fields=["server", "serial_port"], condition=Q(serial_port__isnull=False), name="vm_unique_serial_port"
            ),
        ]
        # (name, id) is the list's order: keyset pages read it forwards and backwards by index.
        indexes = [
            models.Index(fields=["status"]),
            models.Index(fields=["server_pool", "name"]),
            models.Index(fields=["name", "id"], name="inventory_vm_name_id"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_template(self) -> bool:
        return self.status == choices.VmStatus.TEMPLATE


class VmDiskSlot(models.Model):
    """A disk slot of a VM: a virtual disk, an ISO as CD-ROM, or an empty drive."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="disk_slots")
    slot = models.PositiveIntegerField(validators=[MaxValueValidator(63)])
    kind = models.CharField(max_length=8, choices=choices.DiskSlotKind.choices, default=choices.DiskSlotKind.DISK)
    virtual_disk = models.ForeignKey(VirtualDisk, null=True, blank=True, on_delete=models.PROTECT, related_name="slots")
    iso = models.ForeignKey(IsoFile, null=True, blank=True, on_delete=models.PROTECT, related_name="slots")
    bus = models.CharField(max_length=8, choices=choices.DiskBus.choices, default=choices.DiskBus.VIRTIO)

    class Meta:
        ordering = ["vm", "slot"]
        constraints = [
            models.UniqueConstraint(fields=["vm", "slot"], name="diskslot_unique_slot"),
            models.CheckConstraint(
                condition=(
                    Q(kind=choices.DiskSlotKind.DISK, virtual_disk__isnull=False, iso__isnull=True)
                    | Q(kind=choices.DiskSlotKind.CDROM, virtual_disk__isnull=True, iso__isnull=False)
                    | Q(kind=choices.DiskSlotKind.EMPTY, virtual_disk__isnull=True, iso__isnull=True)
                ),
                name="diskslot_kind_matches_content",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.vm}#{self.slot}"


class Vnic(TimestampedModel):
    """A virtual NIC; it always belongs to a VM (seed 7.4)."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="vnics")
    mac = models.CharField(max_length=17, unique=True, validators=[mac_validator])
    network = models.ForeignKey(Network, null=True, blank=True, on_delete=models.PROTECT, related_name="vnics")
    model = models.CharField(max_length=8, choices=choices.VnicModel.choices, default=choices.VnicModel.VIRTIO)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["vm", "position", "id"]
        verbose_name = "VNIC"

    def __str__(self) -> str:
        return self.mac


class VirtualAppliance(TimestampedModel):
    """An OVF/OVA imported into a repository's Assemblies/, with one or more VMs."""

    name = models.CharField(max_length=255)
    repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="appliances")
    ovf_path = models.CharField(max_length=1024, blank=True)
    ovf_xml = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class VirtualApplianceVm(models.Model):
    appliance = models.ForeignKey(VirtualAppliance, on_delete=models.CASCADE, related_name="vms")
    name = models.CharField(max_length=NAME_MAX)
    vcpus = models.PositiveIntegerField(default=1)
    memory_mib = models.PositiveIntegerField(default=512)
    os_type = models.CharField(max_length=16, choices=choices.OsType.choices, default=choices.OsType.OTHER_LINUX)
    # Disk files of this VM inside the appliance, in slot order.
    disks = models.ManyToManyField(VirtualDisk, blank=True, related_name="appliance_vms")

    def __str__(self) -> str:
        return f"{self.appliance}/{self.name}"


class CloneCustomizer(TimestampedModel):
    """Per-disk targets and clone types and network mapping for an advanced clone or a move."""

    name = models.CharField(max_length=NAME_MAX)
    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="clone_customizers")
    description = models.TextField(blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["vm", "name"], name="customizer_unique_name_per_vm")]

    def __str__(self) -> str:
        return self.name


class CloneCustomizerDisk(models.Model):
    customizer = models.ForeignKey(CloneCustomizer, on_delete=models.CASCADE, related_name="disks")
    slot = models.ForeignKey(VmDiskSlot, on_delete=models.CASCADE, related_name="+")
    target_repository = models.ForeignKey(Repository, on_delete=models.PROTECT, related_name="+")
    clone_type = models.CharField(max_length=16, choices=choices.CloneType.choices, default=choices.CloneType.SPARSE)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customizer", "slot"], name="customizer_disk_unique_slot")]


class CloneCustomizerNetwork(models.Model):
    customizer = models.ForeignKey(CloneCustomizer, on_delete=models.CASCADE, related_name="networks")
    vnic = models.ForeignKey(Vnic, on_delete=models.CASCADE, related_name="+")
    network = models.ForeignKey(Network, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["customizer", "vnic"], name="customizer_net_unique_vnic")]


class AntiAffinityGroup(TimestampedModel):
    name = models.CharField(max_length=NAME_MAX)
    server_pool = models.ForeignKey(ServerPool, on_delete=models.CASCADE, related_name="anti_affinity_groups")
    vms = models.ManyToManyField(VirtualMachine, blank=True, related_name="anti_affinity_groups")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["server_pool", "name"], name="aag_unique_name_per_pool")]

    def __str__(self) -> str:
        return self.name


class VmMessage(models.Model):
    """One key/value message sent into a guest (seed 7.10). A hidden value is never stored."""

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="messages")
    key = models.CharField(max_length=256)
    value = models.TextField(blank=True)
    hidden = models.BooleanField(default=False)
    logged = models.BooleanField(default=True)
    result = models.CharField(
        max_length=16, choices=choices.MessageResult.choices, default=choices.MessageResult.PENDING
    )
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
