"""Operations on a virtual machine: migrate, clone (and its clone customizers), move,
back up, send messages, and the plain confirmation."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ovmweb.inventory import choices, rules
from ovmweb.inventory.models import Network, Repository, Server, ServerPool, VirtualMachine


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
    # A password input: a value is typed masked (the page shows it as text only while its
    # row's "Hide value" is unchecked, app.js), and a hidden one is never rendered back.
    value = forms.CharField(
        label=_("Value"),
        required=False,
        max_length=rules.MESSAGE_VALUE_MAX_BYTES_UNLOGGED,
        widget=forms.PasswordInput(render_value=True, attrs={"autocomplete": "off", "data-message-value": ""}),
    )
    hidden = forms.BooleanField(
        label=_("Hide value"), required=False, widget=forms.CheckboxInput(attrs={"data-hides-value": ""})
    )
    log = forms.BooleanField(label=_("Log"), required=False, initial=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.is_bound and self.fields["hidden"].widget.value_from_datadict(
            self.data, self.files, self.add_prefix("hidden")
        ):
            # Sent back with an error elsewhere on the page: the secret is not in the answer.
            self.fields["value"].widget.render_value = False

    def is_blank(self) -> bool:
        d = getattr(self, "cleaned_data", {}) or {}
        return not d.get("key") and not d.get("value")


MessageFormSet = forms.formset_factory(MessageRowForm, extra=4, max_num=100)
