"""Serializers of the REST API (DESIGN.md §5).

They only check the *shape* of a request and render objects; every rule lives
in the service layer, which the viewsets call with the validated data. Read
serializers (``FooSerializer``) and input serializers (``FooCreateSerializer``
...) are separate so that the OpenAPI schema says exactly what is accepted.
"""

from __future__ import annotations

from django.contrib.contenttypes.models import ContentType
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ovmweb.consoles.models import ConsoleTicket
from ovmweb.inventory import choices, models, rules
from ovmweb.jobs.models import Event, Job

from .mixins import StrictModelSerializer, StrictSerializer

# Largest value every supported database stores in a positive big integer column.
MAX_BIGINT = 9223372036854775807
MAX_INT = 2147483647
fingerprint_validator = RegexValidator(
    r"^SHA256:[A-Za-z0-9+/]{43}=?$", _("Enter an OpenSSH SHA256 fingerprint like SHA256:abc... (43 base64 characters).")
)
mac_validator = models.mac_validator


def _pk(queryset, **kwargs):
    return serializers.PrimaryKeyRelatedField(queryset=queryset, **kwargs)


def _members(queryset):
    """A group's member list, by primary key; optional (PATCH keeps it)."""
    return _pk(queryset, many=True, required=False)


def with_id_and_timestamps(*names: str) -> list[str]:
    """``Meta.fields`` of an ``InventorySerializer``: the fields written, with id and timestamps around them."""
    return ["id", *names, "created_at", "updated_at"]


class InventorySerializer(StrictModelSerializer):
    """An inventory object that a service creates and changes: its id and timestamps are never input."""

    class Meta:
        read_only_fields = ["id", "created_at", "updated_at"]


def content_type_label(content_type_id: int | None) -> str | None:
    # ContentType.objects caches by id, so rendering a page costs no query per row.
    if content_type_id is None:
        return None
    ct = ContentType.objects.get_for_id(content_type_id)
    return f"{ct.app_label}.{ct.model}"


# --------------------------------------------------------------------- jobs, events


class JobSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    target_type = serializers.SerializerMethodField()
    children = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Job
        # params are left out on purpose: they may carry what a user typed (a
        # discovery password must never be echoed back).
        fields = [
            "id",
            "summary",
            "operation",
            "status",
            "progress",
            "user",
            "target_type",
            "target_id",
            "target_name",
            "parent",
            "children",
            "log",
            "error",
            "result",
            "abort_requested",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_target_type(self, job) -> str | None:
        return content_type_label(job.target_type_id)


class EventSerializer(serializers.ModelSerializer):
    object_type = serializers.SerializerMethodField()
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Event
        fields = [
            "id",
            "object_type",
            "object_id",
            "object_repr",
            "severity",
            "type",
            "text",
            "acknowledged",
            "acknowledged_by",
            "user",
            "job",
            "created_at",
        ]
        read_only_fields = fields

    def get_object_type(self, event) -> str | None:
        return content_type_label(event.content_type_id)


class JobListSerializer(serializers.Serializer):
    """What ``POST /vms/{id}/messages/`` answers: one job per message."""

    jobs = JobSerializer(many=True)


class ErrorDetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


# --------------------------------------------------------------------- pools and groups


class ServerPoolSerializer(InventorySerializer):
    class Meta(InventorySerializer.Meta):
        model = models.ServerPool
        fields = with_id_and_timestamps("name", "architecture", "description")


class ProcessorCompatibilityGroupSerializer(InventorySerializer):
    servers = _members(models.Server.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.ProcessorCompatibilityGroup
        fields = with_id_and_timestamps("name", "description", "servers")


class AntiAffinityGroupSerializer(InventorySerializer):
    vms = _members(models.VirtualMachine.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.AntiAffinityGroup
        fields = with_id_and_timestamps("name", "server_pool", "vms")
        # Uniqueness of (pool, name) is a rule of the service; the generated
        # validator would make server_pool required on PATCH.
        validators = []


# --------------------------------------------------------------------- servers


class ServerSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Server
        exclude = ["credentials_encrypted"]
        read_only_fields = [f.name for f in models.Server._meta.fields if f.name != "credentials_encrypted"]


class ServerUpdateSerializer(StrictModelSerializer):
    class Meta:
        model = models.Server
        fields = ["name", "server_pool", "compatibility_group", "inbound_migration_lock"]


class ServerDiscoverSerializer(StrictSerializer):
    hostname = serializers.CharField(max_length=255)
    transport = serializers.ChoiceField(choices=choices.Transport.choices, default=choices.Transport.SSH)
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, default=22)
    ssh_user = serializers.CharField(max_length=64, default="root")
    password = serializers.CharField(
        required=False, allow_blank=True, write_only=True, style={"input_type": "password"}
    )
    private_key = serializers.CharField(required=False, allow_blank=True, write_only=True)
    host_key_fingerprint = serializers.CharField(max_length=128, validators=[fingerprint_validator], required=False)
    name = serializers.CharField(max_length=models.NAME_MAX, required=False, allow_null=True)
    server_pool = _pk(models.ServerPool.objects.all(), required=False, allow_null=True)

    def validate(self, attrs):
        if attrs["transport"] == choices.Transport.SSH:
            # The host key is pinned from the start: never learned on first use.
            if not attrs.get("host_key_fingerprint"):
                raise serializers.ValidationError({"host_key_fingerprint": [_("Required for SSH.")]})
            if not (attrs.get("password") or attrs.get("private_key")):
                raise serializers.ValidationError({"password": [_("Give a password or a private key for SSH.")]})
        return attrs


# --------------------------------------------------------------------- storage


class RepositorySerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Repository
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "path",
            "nfs_server",
            "nfs_export",
            "server",
            "server_pools",
            "capacity_bytes",
            "allocation_bytes",
            "available_bytes",
            "refreshed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RepositoryCreateSerializer(StrictModelSerializer):
    server_pools = _pk(models.ServerPool.objects.all(), many=True, required=False)

    class Meta:
        model = models.Repository
        fields = ["name", "kind", "backend", "path", "nfs_server", "nfs_export", "server", "server_pools"]
        extra_kwargs = {"kind": {"required": True}}
        # The database check constraints are rules the service explains itself.
        validators = []


class RepositoryPresentSerializer(StrictSerializer):
    server_pool = _pk(models.ServerPool.objects.all())


class VirtualDiskSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.VirtualDisk
        fields = [
            "id",
            "name",
            "repository",
            "volume",
            "size_bytes",
            "allocation_bytes",
            "format",
            "sparse",
            "shareable",
            "backing_disk",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class VirtualDiskCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    repository = _pk(models.Repository.objects.all())
    size_bytes = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)
    sparse = serializers.BooleanField(default=True)
    shareable = serializers.BooleanField(default=False)


class VirtualDiskResizeSerializer(StrictSerializer):
    size_bytes = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)


class IsoFileSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.IsoFile
        fields = ["id", "name", "repository", "size_bytes", "sha256", "created_at", "updated_at"]
        read_only_fields = fields


class IsoUploadSerializer(StrictSerializer):
    repository = _pk(models.Repository.objects.all())
    file = serializers.FileField()
    name = serializers.CharField(max_length=255, required=False)


class IsoImportSerializer(StrictSerializer):
    repository = _pk(models.Repository.objects.all())
    url = serializers.URLField(max_length=2048)


# --------------------------------------------------------------------- networks


class NetworkSerializer(InventorySerializer):
    roles = serializers.ListField(child=serializers.ChoiceField(choices=choices.NetworkRole.choices), required=False)
    server_pools = _members(models.ServerPool.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.Network
        fields = with_id_and_timestamps(
            "name", "bridge", "libvirt_network", "vlan_id", "roles", "server_pools", "description"
        )


class MacRangeSerializer(StrictSerializer):
    start = serializers.CharField(max_length=17, validators=[mac_validator])
    end = serializers.CharField(max_length=17, validators=[mac_validator])


# --------------------------------------------------------------------- VNICs


class VnicSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Vnic
        fields = ["id", "vm", "mac", "network", "model", "position", "created_at", "updated_at"]
        read_only_fields = fields


class VnicCreateSerializer(StrictSerializer):
    vm = _pk(models.VirtualMachine.objects.all())
    network = _pk(models.Network.objects.all(), required=False, allow_null=True)
    model = serializers.ChoiceField(choices=choices.VnicModel.choices, required=False, allow_null=True)
    mac = serializers.CharField(max_length=17, validators=[mac_validator], required=False, allow_null=True)


# --------------------------------------------------------------------- virtual machines


class VmDiskSlotSerializer(serializers.ModelSerializer):
    virtual_disk_name = serializers.CharField(source="virtual_disk.name", read_only=True, default=None)
    size_bytes = serializers.IntegerField(source="virtual_disk.size_bytes", read_only=True, default=None)
    iso_name = serializers.CharField(source="iso.name", read_only=True, default=None)

    class Meta:
        model = models.VmDiskSlot
        fields = ["id", "slot", "kind", "bus", "virtual_disk", "virtual_disk_name", "size_bytes", "iso", "iso_name"]
        read_only_fields = fields


class VmVnicSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Vnic
        fields = ["id", "mac", "network", "model", "position"]
        read_only_fields = fields


VM_FIELDS = [
    "id",
    "name",
    "uuid",
    "description",
    "domain_type",
    "status",
    "server_pool",
    "server",
    "repository",
    "os_type",
    "guest_kernel",
    "pv_drivers_installed",
    "vcpus",
    "max_vcpus",
    "memory_mib",
    "max_memory_mib",
    "huge_pages",
    "keymap",
    "mouse_device",
    "boot_order",
    "ha_enabled",
    "cpu_pinning",
    "pvm_boot_url",
    "kernel_args",
    "pending_changes",
    "vnc_port",
    "serial_port",
    "origin",
    "disks",
    "vnics",
    "created_at",
    "updated_at",
]


class VirtualMachineSerializer(serializers.ModelSerializer):
    disks = VmDiskSlotSerializer(source="disk_slots", many=True, read_only=True)
    vnics = VmVnicSerializer(many=True, read_only=True)
    pending_changes = serializers.DictField(read_only=True)
    boot_order = serializers.ListField(
        child=serializers.ChoiceField(choices=choices.BootDevice.choices), read_only=True
    )

    class Meta:
        model = models.VirtualMachine
        fields = VM_FIELDS
        read_only_fields = VM_FIELDS


_VM_EDITABLE = [
    "name",
    "description",
    "domain_type",
    "os_type",
    "guest_kernel",
    "pv_drivers_installed",
    "vcpus",
    "max_vcpus",
    "memory_mib",
    "max_memory_mib",
    "huge_pages",
    "keymap",
    "mouse_device",
    "boot_order",
    "ha_enabled",
    "cpu_pinning",
    "pvm_boot_url",
    "kernel_args",
]


class VmUpdateSerializer(StrictModelSerializer):
    boot_order = serializers.ListField(
        child=serializers.ChoiceField(choices=choices.BootDevice.choices), required=False, max_length=3
    )

    class Meta:
        model = models.VirtualMachine
        fields = _VM_EDITABLE


# The installation sources of seed 7.1/7.2, in the order the API documents them
# (also named in SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
VM_SOURCE_KINDS = [
    rules.SourceKind.ISO,
    rules.SourceKind.PVM_URL,
    rules.SourceKind.TEMPLATE,
    rules.SourceKind.CLONE,
    rules.SourceKind.APPLIANCE,
    rules.SourceKind.NONE,
]


class VmSourceSerializer(StrictSerializer):
    """Where a new VM's operating system comes from (seed 7.1/7.2)."""

    kind = serializers.ChoiceField(choices=VM_SOURCE_KINDS)
    iso = _pk(models.IsoFile.objects.all(), required=False)
    url = serializers.CharField(max_length=1024, required=False)
    template = _pk(models.VirtualMachine.objects.all(), required=False)
    vm = _pk(models.VirtualMachine.objects.all(), required=False)
    appliance_vm = _pk(models.VirtualApplianceVm.objects.all(), required=False)

    NEEDS = {"iso": "iso", "pvm_url": "url", "template": "template", "clone": "vm", "appliance": "appliance_vm"}

    def validate(self, attrs):
        kind = attrs["kind"]
        needed = self.NEEDS.get(kind)
        if needed and attrs.get(needed) in (None, ""):
            raise serializers.ValidationError({needed: [_("Required when kind is %(kind)s.") % {"kind": kind}]})
        extra = [k for k in attrs if k != "kind" and k != needed]
        if extra:
            raise serializers.ValidationError(
                {k: [_("Not used when kind is %(kind)s.") % {"kind": kind}] for k in extra}
            )
        return {"kind": kind, needed: attrs[needed]} if needed else {"kind": kind}


class NewDiskSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    size_bytes = serializers.IntegerField(min_value=1, max_value=MAX_BIGINT)
    repository = _pk(models.Repository.objects.all(), required=False, allow_null=True)
    sparse = serializers.BooleanField(default=True)


class VmDiskSpecSerializer(StrictSerializer):
    virtual_disk = _pk(models.VirtualDisk.objects.all(), required=False)
    new = NewDiskSerializer(required=False)
    bus = serializers.ChoiceField(
        choices=choices.DiskBus.choices,
        required=False,
        help_text=_("Default: the domain type's (paravirtual for PVHVM/PVM)."),
    )

    def validate(self, attrs):
        if ("virtual_disk" in attrs) == ("new" in attrs):
            raise serializers.ValidationError(_("Give exactly one of virtual_disk or new."))
        return attrs


class VmVnicSpecSerializer(StrictSerializer):
    network = _pk(models.Network.objects.all(), required=False, allow_null=True)
    model = serializers.ChoiceField(choices=choices.VnicModel.choices, required=False, allow_null=True)


class VmCreateSerializer(VmUpdateSerializer):
    server_pool = _pk(models.ServerPool.objects.all(), required=False, allow_null=True)
    repository = _pk(models.Repository.objects.all(), required=False, allow_null=True)
    source = VmSourceSerializer(required=False)
    disks = VmDiskSpecSerializer(many=True, required=False)
    vnics = VmVnicSpecSerializer(many=True, required=False)

    class Meta(VmUpdateSerializer.Meta):
        fields = _VM_EDITABLE + ["server_pool", "repository", "source", "disks", "vnics"]
        # The domain type and guest OS decide which rules apply: no silent default.
        extra_kwargs = {"domain_type": {"required": True}, "os_type": {"required": True}}


class VmMigrateSerializer(StrictSerializer):
    target_server = _pk(models.Server.objects.all(), required=False, allow_null=True)
    target_pool = _pk(models.ServerPool.objects.all(), required=False, allow_null=True)
    target_repository = _pk(
        models.Repository.objects.all(),
        required=False,
        allow_null=True,
        help_text=_(
            "For a running VM on a local repository: where its disks are copied (default: the first local "
            "repository of the target server; naming a local repository is enough to name its server)."
        ),
    )


class VmDiskAttachSerializer(StrictSerializer):
    """A virtual disk, or an ISO file as CD-ROM, to put into the VM's next free slot."""

    virtual_disk = _pk(models.VirtualDisk.objects.all(), required=False)
    iso = _pk(models.IsoFile.objects.all(), required=False)
    bus = serializers.ChoiceField(
        choices=choices.DiskBus.choices,
        required=False,
        help_text=_("Disk bus of a virtual disk (default: the domain type's; a CD-ROM is always SATA)."),
    )

    def validate(self, attrs):
        if ("virtual_disk" in attrs) == ("iso" in attrs):
            raise serializers.ValidationError(_("Give exactly one of virtual_disk or iso."))
        if "bus" in attrs and "iso" in attrs:
            raise serializers.ValidationError({"bus": [_("A CD-ROM is always on the SATA bus.")]})
        return attrs


class VmCloneSerializer(StrictSerializer):
    name = serializers.CharField(max_length=models.NAME_MAX)
    customizer = _pk(models.CloneCustomizer.objects.all(), required=False, allow_null=True)
    server_pool = _pk(models.ServerPool.objects.all(), required=False, allow_null=True)
    as_template = serializers.BooleanField(default=False)


class VmDiskAttachResultSerializer(serializers.Serializer):
    slot = VmDiskSlotSerializer()
    job = JobSerializer(allow_null=True, help_text=_("The hot-plug job on a running VM; null on a stopped one."))


class VmBackupSerializer(StrictSerializer):
    repository = _pk(
        models.Repository.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("Where the backup's disks go (default: the VM's own repository)."),
    )


class VmMoveSerializer(StrictSerializer):
    """Exactly one of the two: a clone customizer naming each disk's target, or one repository
    for the configuration and every disk."""

    customizer = _pk(models.CloneCustomizer.objects.all(), required=False)
    target_repository = _pk(models.Repository.objects.all(), required=False)

    def validate(self, attrs):
        if ("customizer" in attrs) == ("target_repository" in attrs):
            raise serializers.ValidationError(_("Give exactly one of customizer or target_repository."))
        return attrs


class VmMessageSerializer(StrictSerializer):
    key = serializers.CharField(max_length=256)
    value = serializers.CharField(allow_blank=True, max_length=65536)
    hidden = serializers.BooleanField(default=False)
    log = serializers.BooleanField(default=True)


class VmMessagesSerializer(StrictSerializer):
    messages = VmMessageSerializer(many=True, allow_empty=False, max_length=100)


# --------------------------------------------------------------------- customizers, appliances


class CloneCustomizerDiskSerializer(StrictModelSerializer):
    class Meta:
        model = models.CloneCustomizerDisk
        fields = ["slot", "target_repository", "clone_type"]
        validators = []


class CloneCustomizerNetworkSerializer(StrictModelSerializer):
    class Meta:
        model = models.CloneCustomizerNetwork
        fields = ["vnic", "network"]
        validators = []


class CloneCustomizerSerializer(InventorySerializer):
    disks = CloneCustomizerDiskSerializer(many=True, required=False)
    networks = CloneCustomizerNetworkSerializer(many=True, required=False)

    class Meta(InventorySerializer.Meta):
        model = models.CloneCustomizer
        fields = with_id_and_timestamps("name", "vm", "description", "disks", "networks")
        validators = []


class CloneCustomizerUpdateSerializer(CloneCustomizerSerializer):
    """A customizer stays with its VM; ``disks``/``networks``, when given, replace the whole list."""

    class Meta(CloneCustomizerSerializer.Meta):
        read_only_fields = ["id", "vm", "created_at", "updated_at"]


class VirtualApplianceVmSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.VirtualApplianceVm
        fields = ["id", "name", "vcpus", "memory_mib", "os_type", "disks"]
        read_only_fields = fields


class VirtualApplianceSerializer(serializers.ModelSerializer):
    vms = VirtualApplianceVmSerializer(many=True, read_only=True)

    class Meta:
        model = models.VirtualAppliance
        fields = ["id", "name", "repository", "ovf_path", "vms", "created_at", "updated_at"]
        read_only_fields = fields


class VirtualApplianceUploadSerializer(StrictSerializer):
    repository = _pk(models.Repository.objects.all())
    file = serializers.FileField(help_text=_("An OVA: the .ovf descriptor and its disks in one tar."))
    name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text=_("Default: the file name without .ova.")
    )


class VirtualApplianceImportSerializer(StrictSerializer):
    repository = _pk(models.Repository.objects.all())
    url = serializers.URLField(max_length=2048, help_text=_("HTTP(S) URL of an .ova, or of an .ovf next to its disks."))
    name = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text=_("Default: the file name of the URL without its extension."),
    )


class ConsoleTicketSerializer(serializers.ModelSerializer):
    """Rendered without the token hash: a ticket is a secret."""

    class Meta:
        model = ConsoleTicket
        fields = ["id", "user", "vm", "kind", "read_only", "created_at", "expires_at", "used_at"]
        read_only_fields = fields
