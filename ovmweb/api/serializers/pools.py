"""Server pools, processor compatibility groups and anti-affinity groups."""

from __future__ import annotations

from ovmweb.inventory import models

from .base import InventorySerializer, members_field, with_id_and_timestamps


class ServerPoolSerializer(InventorySerializer):
    class Meta(InventorySerializer.Meta):
        model = models.ServerPool
        fields = with_id_and_timestamps("name", "architecture", "description")


class ProcessorCompatibilityGroupSerializer(InventorySerializer):
    servers = members_field(models.Server.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.ProcessorCompatibilityGroup
        fields = with_id_and_timestamps("name", "description", "servers")


class AntiAffinityGroupSerializer(InventorySerializer):
    vms = members_field(models.VirtualMachine.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.AntiAffinityGroup
        fields = with_id_and_timestamps("name", "server_pool", "vms")
        # Uniqueness of (pool, name) is a rule of the service; the generated
        # validator would make server_pool required on PATCH.
        validators = []
