"""Server pools, processor compatibility groups and anti-affinity groups."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.inventory import models

from ..mixins import StrictModelSerializer
from .base import InventorySerializer, members_field, with_id_and_timestamps


class ServerPoolSerializer(InventorySerializer):
    class Meta(InventorySerializer.Meta):
        model = models.ServerPool
        fields = with_id_and_timestamps("name", "architecture", "description")


class PoolPoliciesSerializer(StrictModelSerializer):
    """DRS and DPM of a pool (seed 6.12); ``ha_warning``: why HA cannot be enabled there (no disk leases)."""

    ha_warning = serializers.SerializerMethodField()

    class Meta:
        model = models.ServerPool
        fields = ["drs_enabled", "drs_threshold_percent", "drs_period_s", "dpm_enabled", "ha_warning"]

    def get_ha_warning(self, pool) -> str:
        from ovmweb.inventory.services.pools import ha_refusal

        return ha_refusal(pool) or ""


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
