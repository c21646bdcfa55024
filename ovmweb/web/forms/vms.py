"""Create and edit a virtual machine (the wizard's installation sources), and add a
VNIC or a disk to it."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ovmweb.inventory import choices
from ovmweb.inventory.models import (
    IsoFile,
    Network,
    Repository,
    ServerPool,
    VirtualApplianceVm,
    VirtualDisk,
    VirtualMachine,
)

from .storage import GIB

ALL_TYPES = [c for c in choices.DomainType.values]

# Installation sources (seed 7.2) and the domain types each allows, as the wizard offers them.
SOURCES = [
    {
        "kind": "iso",
        "title": _("ISO in a repository"),
        "field": "iso",
        "help": _("Boot the installer from an ISO file in a storage repository (HVM and PVHVM)."),
        "domain_types": [choices.DomainType.HVM, choices.DomainType.PVHVM],
    },
    {
        "kind": "pvm_url",
        "title": _("Mounted ISO URL (PVM)"),
        "field": "url",
        "help": _("Network boot from a mounted install tree over NFS, HTTP or FTP (PVM only)."),
        "domain_types": [choices.DomainType.PVM],
    },
    {
        "kind": "template",
        "title": _("Template"),
        "field": "template",
        "help": _("Create from a virtual machine template (all domain types)."),
        "domain_types": ALL_TYPES,
    },
    {
        "kind": "clone",
        "title": _("Clone of a virtual machine"),
        "field": "clone_vm",
        "help": _("Copy an existing stopped virtual machine (all domain types)."),
        "domain_types": ALL_TYPES,
    },
    {
        "kind": "appliance",
        "title": _("Virtual appliance"),
        "field": "appliance_vm",
        "help": _("Create from a VM of an imported virtual appliance (all domain types)."),
        "domain_types": ALL_TYPES,
    },
]
SOURCE_KINDS = {s["kind"]: s for s in SOURCES}

BOOT_CHOICES = [("", _("(none)"))] + list(choices.BootDevice.choices)


class VmCoreFieldsMixin(forms.Form):
    """Fields shared by create and edit, named like the model and service arguments."""

    name = forms.CharField(label=_("Name"), max_length=128)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))
    os_type = forms.ChoiceField(label=_("Operating system"), choices=choices.OsType.choices)
    vcpus = forms.IntegerField(label=_("vCPUs"), min_value=1, initial=1)
    max_vcpus = forms.IntegerField(label=_("Max. vCPUs"), min_value=1, initial=1)
    memory_mib = forms.IntegerField(label=_("Memory (MiB)"), min_value=1, initial=512)
    max_memory_mib = forms.IntegerField(label=_("Max. memory (MiB)"), min_value=1, initial=512)
    boot_1 = forms.ChoiceField(label=_("Boot device 1"), choices=BOOT_CHOICES, required=False)
    boot_2 = forms.ChoiceField(label=_("Boot device 2"), choices=BOOT_CHOICES, required=False)
    boot_3 = forms.ChoiceField(label=_("Boot device 3"), choices=BOOT_CHOICES, required=False)

    def boot_order(self) -> list[str]:
        order: list[str] = []
        for key in ("boot_1", "boot_2", "boot_3"):
            dev = self.cleaned_data.get(key)
            if dev and dev not in order:
                order.append(dev)
        return order

    def _add_boot_errors(self, exc_messages):
        for m in exc_messages:
            self.add_error("boot_1", m)


class VmCreateForm(VmCoreFieldsMixin):
    # Service error keys -> the form field that shows them.
    SERVICE_FIELD_MAP = {
        "boot_order": "boot_1",
        "disks": "existing_disks",
        "vnics": "networks",
        "memory": "memory_mib",
        "max_memory": "max_memory_mib",
        "pvm_boot_url": "url",
    }

    server_pool = forms.ModelChoiceField(label=_("Server pool"), queryset=ServerPool.objects.all(), required=False)
    repository = forms.ModelChoiceField(
        label=_("Repository"),
        queryset=Repository.objects.all(),
        required=False,
        help_text=_("Where the VM's configuration and new disks are stored."),
    )
    domain_type = forms.ChoiceField(label=_("Domain type"))
    iso = forms.ModelChoiceField(label=_("ISO file"), queryset=IsoFile.objects.select_related("repository"))
    url = forms.CharField(
        label=_("Mounted ISO URL"),
        max_length=1024,
        help_text=_("nfs://host/path, http://host/path or ftp://host/path of the install tree."),
    )
    template = forms.ModelChoiceField(
        label=_("Template"), queryset=VirtualMachine.objects.filter(status=choices.VmStatus.TEMPLATE)
    )
    clone_vm = forms.ModelChoiceField(
        label=_("Virtual machine to clone"), queryset=VirtualMachine.objects.exclude(status=choices.VmStatus.TEMPLATE)
    )
    appliance_vm = forms.ModelChoiceField(
        label=_("Appliance VM"), queryset=VirtualApplianceVm.objects.select_related("appliance")
    )
    existing_disks = forms.ModelMultipleChoiceField(
        label=_("Existing virtual disks"),
        required=False,
        queryset=VirtualDisk.objects.filter(slots__isnull=True, appliance_vms__isnull=True).select_related(
            "repository"
        ),
        help_text=_("Unattached disks to give to this VM, in slot order."),
    )
    new_disk_name = forms.CharField(label=_("New disk name"), required=False, max_length=255)
    new_disk_size_gib = forms.DecimalField(
        label=_("New disk size (GiB)"), required=False, min_value=0, decimal_places=3, max_digits=12
    )
    new_disk_sparse = forms.BooleanField(label=_("Sparse allocation"), required=False, initial=True)
    networks = forms.ModelMultipleChoiceField(
        label=_("Networks (one VNIC each)"), queryset=Network.objects.all(), required=False
    )
    vnic_model = forms.ChoiceField(
        label=_("VNIC model"),
        required=False,
        choices=[("", _("Default for the domain type"))] + list(choices.VnicModel.choices),
    )

    def __init__(self, *args, source: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.source = SOURCE_KINDS[source]
        self.source_field = self.source["field"]
        for s in SOURCES:
            if s["field"] != self.source_field:
                del self.fields[s["field"]]
        self.fields["domain_type"].choices = [(t, choices.DomainType(t).label) for t in self.source["domain_types"]]
        self.fields["boot_1"].initial = "cdrom" if source == "iso" else "disk"
        self.fields["boot_2"].initial = "disk" if source == "iso" else ""

    @staticmethod
    def initial_from(source: str, query) -> dict:
        """Defaults when the wizard is opened for one object (e.g. "Create VM…" on an
        appliance VM in a repository): its name and sizing."""
        if source == "appliance" and (pk := query.get("appliance_vm", "")).isdigit():
            av = VirtualApplianceVm.objects.filter(pk=pk).select_related("appliance__repository").first()
            if av is not None:
                return {
                    "appliance_vm": av.pk,
                    "name": av.name,
                    "os_type": av.os_type,
                    "vcpus": av.vcpus,
                    "max_vcpus": av.vcpus,
                    "memory_mib": av.memory_mib,
                    "max_memory_mib": av.memory_mib,
                    "repository": av.appliance.repository_id,
                }
        return {}

    def clean(self):
        data = super().clean()
        if data.get("new_disk_name") and not data.get("new_disk_size_gib"):
            self.add_error("new_disk_size_gib", _("Give the size of the new disk."))
        if data.get("new_disk_size_gib") and not data.get("new_disk_name"):
            self.add_error("new_disk_name", _("Give the new disk a name."))
        return data

    def source_spec(self) -> dict:
        d, kind = self.cleaned_data, self.source["kind"]
        value = d[self.source_field]
        key = {"iso": "iso", "pvm_url": "url", "template": "template", "clone": "vm", "appliance": "appliance_vm"}[kind]
        return {"kind": kind, key: value}

    def service_kwargs(self) -> dict:
        d = self.cleaned_data
        disks: list[dict] = [{"virtual_disk": disk} for disk in d["existing_disks"]]
        if d.get("new_disk_name"):
            disks.append(
                {
                    "new": {
                        "name": d["new_disk_name"],
                        "size_bytes": int(d["new_disk_size_gib"] * GIB),
                        "repository": d["repository"],
                        "sparse": d["new_disk_sparse"],
                    }
                }
            )
        vnics = [{"network": net, "model": d["vnic_model"] or None} for net in d["networks"]]
        return {
            "name": d["name"],
            "description": d["description"],
            "server_pool": d["server_pool"],
            "repository": d["repository"],
            "domain_type": d["domain_type"],
            "os_type": d["os_type"],
            "vcpus": d["vcpus"],
            "max_vcpus": d["max_vcpus"],
            "memory_mib": d["memory_mib"],
            "max_memory_mib": d["max_memory_mib"],
            "source": self.source_spec(),
            "disks": disks,
            "vnics": vnics,
            "boot_order": self.boot_order(),
        }


class VmEditForm(VmCoreFieldsMixin):
    EDITABLE = [
        "name",
        "description",
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
        "ha_enabled",
        "cpu_pinning",
    ]

    guest_kernel = forms.CharField(label=_("Guest kernel release"), required=False, max_length=64)
    pv_drivers_installed = forms.BooleanField(label=_("Paravirtual drivers installed"), required=False)
    huge_pages = forms.BooleanField(label=_("HugePages"), required=False)
    keymap = forms.ChoiceField(label=_("Keymap"), choices=choices.Keymap.choices)
    mouse_device = forms.ChoiceField(label=_("Mouse device"), choices=choices.MouseDevice.choices)
    ha_enabled = forms.BooleanField(label=_("High availability"), required=False)
    cpu_pinning = forms.CharField(
        label=_("CPU pinning (cpuset)"),
        required=False,
        max_length=128,
        help_text=_("e.g. 0-1,4; blank for no hard partitioning."),
    )

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        # What the VM will have at its next start: pending values win over the running ones.
        effective = {f: getattr(vm, f) for f in self.EDITABLE} | {
            k: v for k, v in (vm.pending_changes or {}).items() if k in self.EDITABLE
        }
        order = list((vm.pending_changes or {}).get("boot_order", vm.boot_order) or [])
        for i in range(3):
            effective[f"boot_{i + 1}"] = order[i] if i < len(order) else ""
        super().__init__(*args, initial=effective, **kwargs)
        self.vm = vm
        self.effective = effective
        self.effective_boot = order

    def changes(self) -> dict:
        d = self.cleaned_data
        out = {f: d[f] for f in self.EDITABLE if d.get(f) != self.effective.get(f)}
        if self.boot_order() != self.effective_boot:
            out["boot_order"] = self.boot_order()
        return out


class VnicAddForm(forms.Form):
    network = forms.ModelChoiceField(label=_("Network"), queryset=Network.objects.all(), required=False)
    model = forms.ChoiceField(
        label=_("Model"),
        required=False,
        choices=[("", _("Default for the domain type"))] + list(choices.VnicModel.choices),
    )
    mac = forms.CharField(
        label=_("MAC address"), required=False, max_length=17, help_text=_("Blank: next free address of the MAC range.")
    )

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        super().__init__(*args, **kwargs)
        self.vm = vm


class DiskAttachForm(forms.Form):
    virtual_disk = forms.ModelChoiceField(
        label=_("Virtual disk"), required=False, queryset=VirtualDisk.objects.select_related("repository")
    )
    iso = forms.ModelChoiceField(
        label=_("or ISO as CD-ROM"), required=False, queryset=IsoFile.objects.select_related("repository")
    )

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        super().__init__(*args, **kwargs)
        # Offer what the VM does not use yet; whether it may be attached is the service's call.
        self.fields["virtual_disk"].queryset = (
            VirtualDisk.objects.exclude(slots__vm=vm).filter(appliance_vms__isnull=True).select_related("repository")
        )
