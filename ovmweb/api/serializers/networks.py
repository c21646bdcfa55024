"""Networks, the MAC address range, and VNICs."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.inventory import choices, models

from ..mixins import StrictSerializer
from .base import InventorySerializer, mac_validator, members_field, pk_field, with_id_and_timestamps


class NetworkSerializer(InventorySerializer):
    roles = serializers.ListField(child=serializers.ChoiceField(choices=choices.NetworkRole.choices), required=False)
    server_pools = members_field(models.ServerPool.objects.all())

    class Meta(InventorySerializer.Meta):
        model = models.Network
        fields = with_id_and_timestamps(
            "name", "bridge", "libvirt_network", "vlan_id", "roles", "server_pools", "description"
        )


class MacRangeSerializer(StrictSerializer):
    start = serializers.CharField(max_length=17, validators=[mac_validator])
    end = serializers.CharField(max_length=17, validators=[mac_validator])


class VnicSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Vnic
        fields = ["id", "vm", "mac", "network", "model", "position", "created_at", "updated_at"]
        read_only_fields = fields


class VnicCreateSerializer(StrictSerializer):
    vm = pk_field(models.VirtualMachine.objects.all())
    network = pk_field(models.Network.objects.all(), required=False, allow_null=True)
    model = serializers.ChoiceField(choices=choices.VnicModel.choices, required=False, allow_null=True)
    mac = serializers.CharField(max_length=17, validators=[mac_validator], required=False, allow_null=True)
