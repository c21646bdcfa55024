"""Virtual machines: the representation, create/edit input, and the input of each action;
console tickets."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ovmweb.consoles.models import ConsoleTicket
from ovmweb.inventory import choices, models, rules

from ..mixins import StrictModelSerializer, StrictSerializer
from .base import MAX_BIGINT, pk_field
from .jobs import JobSerializer


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
    iso = pk_field(models.IsoFile.objects.all(), required=False)
    url = serializers.CharField(max_length=1024, required=False)
    template = pk_field(models.VirtualMachine.objects.all(), required=False)
    vm = pk_field(models.VirtualMachine.objects.all(), required=False)
    appliance_vm = pk_field(models.VirtualApplianceVm.objects.all(), required=False)

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
    repository = pk_field(models.Repository.objects.all(), required=False, allow_null=True)
    sparse = serializers.BooleanField(default=True)


class VmDiskSpecSerializer(StrictSerializer):
    virtual_disk = pk_field(models.VirtualDisk.objects.all(), required=False)
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
    network = pk_field(models.Network.objects.all(), required=False, allow_null=True)
    model = serializers.ChoiceField(choices=choices.VnicModel.choices, required=False, allow_null=True)


class VmCreateSerializer(VmUpdateSerializer):
    server_pool = pk_field(models.ServerPool.objects.all(), required=False, allow_null=True)
    repository = pk_field(models.Repository.objects.all(), required=False, allow_null=True)
    source = VmSourceSerializer(required=False)
    disks = VmDiskSpecSerializer(many=True, required=False)
    vnics = VmVnicSpecSerializer(many=True, required=False)

    class Meta(VmUpdateSerializer.Meta):
        fields = _VM_EDITABLE + ["server_pool", "repository", "source", "disks", "vnics"]
        # The domain type and guest OS decide which rules apply: no silent default.
        extra_kwargs = {"domain_type": {"required": True}, "os_type": {"required": True}}


class VmMigrateSerializer(StrictSerializer):
    target_server = pk_field(models.Server.objects.all(), required=False, allow_null=True)
    target_pool = pk_field(models.ServerPool.objects.all(), required=False, allow_null=True)
    target_repository = pk_field(
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

    virtual_disk = pk_field(models.VirtualDisk.objects.all(), required=False)
    iso = pk_field(models.IsoFile.objects.all(), required=False)
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
    customizer = pk_field(models.CloneCustomizer.objects.all(), required=False, allow_null=True)
    server_pool = pk_field(models.ServerPool.objects.all(), required=False, allow_null=True)
    as_template = serializers.BooleanField(default=False)


class VmDiskAttachResultSerializer(serializers.Serializer):
    slot = VmDiskSlotSerializer()
    job = JobSerializer(allow_null=True, help_text=_("The hot-plug job on a running VM; null on a stopped one."))


class VmBackupSerializer(StrictSerializer):
    repository = pk_field(
        models.Repository.objects.all(),
        required=False,
        allow_null=True,
        help_text=_("Where the backup's disks go (default: the VM's own repository)."),
    )


class VmMoveSerializer(StrictSerializer):
    """Exactly one of the two: a clone customizer naming each disk's target, or one repository
    for the configuration and every disk."""

    customizer = pk_field(models.CloneCustomizer.objects.all(), required=False)
    target_repository = pk_field(models.Repository.objects.all(), required=False)

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


class ConsoleTicketSerializer(serializers.ModelSerializer):
    """Rendered without the token hash: a ticket is a secret."""

    class Meta:
        model = ConsoleTicket
        fields = ["id", "user", "vm", "kind", "read_only", "created_at", "expires_at", "used_at"]
        read_only_fields = fields
