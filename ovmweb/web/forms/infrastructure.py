"""Servers, server pools, networks and the MAC range."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ovmweb.inventory import choices
from ovmweb.inventory.models import ServerPool


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
    # A host and port that is already a server is refused unless this is ticked (and the
    # user may change that server): a discovery never rewrites a server by accident.
    rediscover = forms.BooleanField(
        label=_("Rediscover: this host is already a server; read it again with these credentials"),
        required=False,
        help_text=_("Its new credentials replace the old ones only if the rediscovery succeeds."),
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


class ServerPoolForm(forms.Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    architecture = forms.ChoiceField(label=_("Architecture"), choices=choices.Architecture.choices)
    description = forms.CharField(label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2}))


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
