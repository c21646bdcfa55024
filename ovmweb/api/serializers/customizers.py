"""Clone customizers of a VM."""

from __future__ import annotations

from ovmweb.inventory import models

from ..mixins import StrictModelSerializer
from .base import InventorySerializer, with_id_and_timestamps


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
