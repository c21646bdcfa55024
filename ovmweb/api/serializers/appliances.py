"""Virtual appliances."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ovmweb.inventory import models

from ..mixins import StrictSerializer
from .base import pk_field


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
    repository = pk_field(models.Repository.objects.all())
    file = serializers.FileField(help_text=_("An OVA: the .ovf descriptor and its disks in one tar."))
    name = serializers.CharField(
        max_length=255, required=False, allow_blank=True, help_text=_("Default: the file name without .ova.")
    )


class VirtualApplianceImportSerializer(StrictSerializer):
    repository = pk_field(models.Repository.objects.all())
    url = serializers.URLField(max_length=2048, help_text=_("HTTP(S) URL of an .ova, or of an .ovf next to its disks."))
    name = serializers.CharField(
        max_length=255,
        required=False,
        allow_blank=True,
        help_text=_("Default: the file name of the URL without its extension."),
    )
