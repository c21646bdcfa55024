"""Repositories, virtual disks, ISO files and virtual appliances."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _

from ovmweb.inventory import choices
from ovmweb.inventory.models import Server, ServerPool

GIB = 1024**3


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
