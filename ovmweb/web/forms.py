"""Forms of the management UI. They check types and shapes only; every rule
(state, vCPU/memory limits, domain type vs installation source, ...) is the
service's, and its errors are put back next to the field that caused them."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ovmweb.inventory import choices, rules
from ovmweb.inventory.models import (
    IsoFile,
    Network,
    Repository,
    Server,
    ServerPool,
    VirtualApplianceVm,
    VirtualDisk,
    VirtualMachine,
)

GIB = 1024**3
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


class MigrateForm(forms.Form):
    """Live (running VM): a server of the same pool, and for a VM in a local repository the
    target server's repository its disks are copied to. Cold (stopped VM): a server pool."""

    target_server = forms.ModelChoiceField(
        label=_("Target server"),
        queryset=Server.objects.all(),
        required=False,
        help_text=_("Blank: let placement choose a server of the pool."),
    )
    target_repository = forms.ModelChoiceField(
        label=_("Target repository (local storage)"),
        queryset=Repository.objects.filter(kind=choices.RepositoryKind.LOCAL),
        required=False,
        help_text=_(
            "For a VM whose disks are in a local repository: the target server's local repository the disks "
            "are copied to during the live migration. Blank: the target server's first one."
        ),
    )
    target_pool = forms.ModelChoiceField(
        label=_("Target server pool"),
        queryset=ServerPool.objects.all(),
        required=False,
        help_text=_("Blank: unassigned (on no server pool)."),
    )

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        super().__init__(*args, **kwargs)
        self.live = vm.status == choices.VmStatus.RUNNING
        if self.live:
            # Live migration stays within the pool (7.7).
            del self.fields["target_pool"]
            servers = Server.objects.filter(server_pool_id=vm.server_pool_id).exclude(pk=vm.server_id)
            self.fields["target_server"].queryset = servers
            self.fields["target_repository"].queryset = Repository.objects.filter(
                kind=choices.RepositoryKind.LOCAL, server__in=servers
            )
            self.storage_migration = rules.needs_storage_migration(vm)
            if not self.storage_migration:
                del self.fields["target_repository"]
        else:
            del self.fields["target_server"]
            del self.fields["target_repository"]
            self.storage_migration = False
            if vm.server_pool_id:
                self.fields["target_pool"].queryset = ServerPool.objects.exclude(pk=vm.server_pool_id)

    def service_kwargs(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v is not None}


class CloneForm(forms.Form):
    name = forms.CharField(label=_("Name of the clone"), max_length=128)
    server_pool = forms.ModelChoiceField(
        label=_("Target server pool"),
        queryset=ServerPool.objects.all(),
        required=False,
        help_text=_("Blank: the pool of the original."),
    )
    customizer = forms.ModelChoiceField(
        label=_("Clone customizer"),
        queryset=None,
        required=False,
        help_text=_(
            "Blank: a simple clone (same repository, same networks; a sparse copy "
            "of each disk, or a thin clone of a running VM). A customizer sets each "
            "disk's target repository and clone type and each VNIC's network."
        ),
    )
    as_template = forms.BooleanField(label=_("Create as a template"), required=False)

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["customizer"].queryset = vm.clone_customizers.all()


class MoveForm(forms.Form):
    target_repository = forms.ModelChoiceField(
        label=_("Target repository"),
        queryset=Repository.objects.all(),
        required=False,
        help_text=_("Takes the configuration and every virtual disk."),
    )
    customizer = forms.ModelChoiceField(
        label=_("or a clone customizer"),
        queryset=None,
        required=False,
        help_text=_("Its target repository per disk; its network changes are ignored by a move."),
    )

    def __init__(self, *args, vm: VirtualMachine, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["customizer"].queryset = vm.clone_customizers.all()
        if vm.repository_id:
            self.fields["target_repository"].queryset = Repository.objects.exclude(pk=vm.repository_id)

    def clean(self):
        data = super().clean()
        if bool(data.get("target_repository")) == bool(data.get("customizer")):
            raise forms.ValidationError(_("Choose a target repository or a clone customizer (one of them)."))
        return data


class CustomizerForm(forms.Form):
    """Create Clone Customizer (seed 7.6): name, description, and per disk of the VM a target
    repository and clone type, per VNIC a network. A disk without a repository and a VNIC
    without a network are left out (the clone keeps the original's)."""

    name = forms.CharField(label=_("Name"), max_length=128)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, vm: VirtualMachine, customizer=None, **kwargs):
        if customizer is not None:
            kwargs.setdefault("initial", {"name": customizer.name, "description": customizer.description})
        super().__init__(*args, **kwargs)
        current_disks = {d.slot_id: d for d in customizer.disks.all()} if customizer else {}
        current_nets = {n.vnic_id: n for n in customizer.networks.all()} if customizer else {}
        self.disk_rows, self.vnic_rows = [], []
        for slot in (
            vm.disk_slots.filter(kind=choices.DiskSlotKind.DISK).select_related("virtual_disk").order_by("slot")
        ):
            row = current_disks.get(slot.pk)
            repo_key, type_key = f"disk_{slot.pk}_repository", f"disk_{slot.pk}_clone_type"
            self.fields[repo_key] = forms.ModelChoiceField(
                label=_("Target repository of slot %(n)s") % {"n": slot.slot},
                queryset=Repository.objects.all(),
                required=False,
                empty_label=_("— as a simple clone —"),
                initial=row.target_repository_id if row else None,
            )
            self.fields[type_key] = forms.ChoiceField(
                label=_("Clone type of slot %(n)s") % {"n": slot.slot},
                choices=choices.CloneType.choices,
                initial=row.clone_type if row else choices.CloneType.SPARSE,
            )
            self.disk_rows.append({"slot": slot, "repository": self[repo_key], "clone_type": self[type_key]})
        for vnic in vm.vnics.select_related("network").order_by("position", "id"):
            row = current_nets.get(vnic.pk)
            key = f"vnic_{vnic.pk}_network"
            self.fields[key] = forms.ModelChoiceField(
                label=_("Network of VNIC %(mac)s") % {"mac": vnic.mac},
                queryset=Network.objects.all(),
                required=False,
                empty_label=_("— unchanged —"),
                initial=row.network_id if row else None,
            )
            self.vnic_rows.append({"vnic": vnic, "network": self[key]})

    def service_kwargs(self) -> dict:
        d = self.cleaned_data
        return {
            "name": d["name"],
            "description": d["description"],
            "disks": [
                {"slot": r["slot"], "target_repository": d[r["repository"].name], "clone_type": d[r["clone_type"].name]}
                for r in self.disk_rows
                if d.get(r["repository"].name) is not None
            ],
            "networks": [
                {"vnic": r["vnic"], "network": d[r["network"].name]}
                for r in self.vnic_rows
                if d.get(r["network"].name) is not None
            ],
        }


class ConfirmForm(forms.Form):
    """An operation with nothing to choose: the POST itself is the confirmation."""


class BackupForm(forms.Form):
    repository = forms.ModelChoiceField(
        label=_("Repository for the backup"),
        queryset=Repository.objects.all(),
        required=False,
        help_text=_("Blank: the virtual machine's own repository."),
    )


class MessageRowForm(forms.Form):
    key = forms.CharField(
        label=_("Key"),
        required=False,
        max_length=256,
        widget=forms.TextInput(attrs={"placeholder": "com.oracle.linux.network.device.0"}),
    )
    value = forms.CharField(
        label=_("Value"), required=False, max_length=rules.MESSAGE_VALUE_MAX_BYTES_UNLOGGED, widget=forms.TextInput
    )
    hidden = forms.BooleanField(label=_("Hide value"), required=False)
    log = forms.BooleanField(label=_("Log"), required=False, initial=True)

    def is_blank(self) -> bool:
        d = getattr(self, "cleaned_data", {}) or {}
        return not d.get("key") and not d.get("value")


MessageFormSet = forms.formset_factory(MessageRowForm, extra=4, max_num=100)


class ServerDiscoverForm(forms.Form):
    hostname = forms.CharField(label=_("Host name or address"), max_length=255)
    name = forms.CharField(label=_("Display name"), max_length=128, required=False)
    transport = forms.ChoiceField(
        label=_("Transport"), choices=choices.Transport.choices, initial=choices.Transport.SSH
    )
    # Not required: the local transport submits no SSH fields (the fieldset is disabled).
    ssh_port = forms.IntegerField(label=_("SSH port"), min_value=1, max_value=65535, initial=22, required=False)
    ssh_user = forms.CharField(label=_("SSH user"), max_length=64, initial="root", required=False)
    password = forms.CharField(label=_("Password"), required=False, widget=forms.PasswordInput(render_value=False))
    private_key = forms.CharField(
        label=_("Private key (PEM/OpenSSH)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
    )
    host_key_fingerprint = forms.CharField(
        label=_("Host key fingerprint"),
        max_length=128,
        required=False,
        help_text=_(
            "SHA256:… as “ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub” prints it on the server. "
            "The connection is refused unless the server offers exactly this key."
        ),
    )
    server_pool = forms.ModelChoiceField(label=_("Server pool"), queryset=ServerPool.objects.all(), required=False)
    # Filled by "Fetch host key" (what the server offered); used only when the administrator
    # ticks confirm_scanned after comparing it with the server's own fingerprint.
    scanned_fingerprint = forms.CharField(required=False, max_length=128, widget=forms.HiddenInput)
    confirm_scanned = forms.BooleanField(
        label=_("I compared this fingerprint with the one the server prints itself, and they are the same"),
        required=False,
    )

    def clean(self):
        data = super().clean()
        if data.get("transport") == choices.Transport.SSH and not data.get("host_key_fingerprint"):
            if data.get("scanned_fingerprint") and data.get("confirm_scanned"):
                data["host_key_fingerprint"] = data["scanned_fingerprint"]
            elif data.get("scanned_fingerprint"):
                self.add_error(
                    "confirm_scanned",
                    _(
                        "Compare the fetched fingerprint with the server's own and confirm it, "
                        "or type the fingerprint yourself."
                    ),
                )
        return data


class HostKeyScanForm(forms.Form):
    hostname = forms.CharField(label=_("Host name or address"), max_length=255)
    ssh_port = forms.IntegerField(label=_("SSH port"), min_value=1, max_value=65535, required=False)


class RepositoryCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    kind = forms.ChoiceField(label=_("Kind"), choices=choices.RepositoryKind.choices)
    backend = forms.ChoiceField(label=_("Back end"), choices=choices.RepositoryBackend.choices)
    path = forms.CharField(label=_("Path on the servers"), max_length=1024)
    server = forms.ModelChoiceField(
        label=_("Server (local repositories)"), queryset=Server.objects.all(), required=False
    )
    nfs_server = forms.CharField(label=_("NFS server"), required=False, max_length=255)
    nfs_export = forms.CharField(label=_("NFS export"), required=False, max_length=1024)
    server_pools = forms.ModelMultipleChoiceField(
        label=_("Present to server pools"), required=False, queryset=ServerPool.objects.all()
    )


class DiskCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=255)
    size_gib = forms.DecimalField(label=_("Size (GiB)"), min_value=0, decimal_places=3, max_digits=12)
    sparse = forms.BooleanField(label=_("Sparse allocation"), required=False, initial=True)
    shareable = forms.BooleanField(label=_("Shareable"), required=False)


class IsoUploadForm(forms.Form):
    file = forms.FileField(label=_("ISO file"))
    name = forms.CharField(
        label=_("Name in the repository"), max_length=255, required=False, help_text=_("Blank: the file's own name.")
    )


class ApplianceImportForm(forms.Form):
    file = forms.FileField(
        label=_("OVA file"),
        required=False,
        help_text=_("An .ova: the OVF descriptor and its disks in one tar archive."),
    )
    url = forms.URLField(
        label=_("or URL"),
        max_length=1024,
        required=False,
        assume_scheme="https",
        help_text=_("HTTP(S) URL of an .ova, or of an .ovf with its disk files next to it."),
    )
    name = forms.CharField(
        label=_("Appliance name"), max_length=255, required=False, help_text=_("Blank: the file's name without .ova.")
    )

    def clean(self):
        data = super().clean()
        if bool(data.get("file")) == bool(data.get("url")):
            raise forms.ValidationError(_("Upload an OVA file or give a URL (one of them)."))
        return data


class IsoImportForm(forms.Form):
    url = forms.URLField(label=_("URL"), max_length=1024, assume_scheme="https")


class NetworkCreateForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    bridge = forms.CharField(label=_("Host bridge"), max_length=15, required=False)
    libvirt_network = forms.CharField(label=_("libvirt network"), max_length=64, required=False)
    vlan_id = forms.IntegerField(label=_("VLAN ID"), required=False, min_value=1, max_value=4094)
    roles = forms.MultipleChoiceField(
        label=_("Roles"), choices=choices.NetworkRole.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    server_pools = forms.ModelMultipleChoiceField(
        label=_("Server pools"), queryset=ServerPool.objects.all(), required=False
    )


class MacRangeForm(forms.Form):
    start = forms.CharField(label=_("First MAC"), max_length=17)
    end = forms.CharField(label=_("Last MAC"), max_length=17)


class ServerPoolForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    architecture = forms.ChoiceField(label=_("Architecture"), choices=choices.Architecture.choices)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


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
