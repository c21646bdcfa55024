"""Virtual disks and ISO files."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.inventory import models

from ..mixins import StrictSerializer
from .base import MAX_BIGINT, pk_field


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
            "thin_base",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class VirtualDiskCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=255)
    repository = pk_field(models.Repository.objects.all())
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
    repository = pk_field(models.Repository.objects.all())
    file = serializers.FileField()
    name = serializers.CharField(max_length=255, required=False)


class IsoImportSerializer(StrictSerializer):
    repository = pk_field(models.Repository.objects.all())
    url = serializers.URLField(max_length=2048)
