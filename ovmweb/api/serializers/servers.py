"""Servers: read, edit, discover."""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from ovmweb.inventory import choices, models

from ..mixins import StrictModelSerializer, StrictSerializer
from .base import fingerprint_validator, pk_field


class ServerSerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Server
        exclude = ["credentials_encrypted"]
        read_only_fields = [f.name for f in models.Server._meta.fields if f.name != "credentials_encrypted"]


class ServerUpdateSerializer(StrictModelSerializer):
    class Meta:
        model = models.Server
        fields = ["name", "server_pool", "compatibility_group", "inbound_migration_lock"]


class ServerMaintenanceSerializer(StrictSerializer):
    on = serializers.BooleanField(help_text=_("True: enter maintenance; false: leave it."))


class ServerDiscoverSerializer(StrictSerializer):
    hostname = serializers.CharField(max_length=255)
    transport = serializers.ChoiceField(choices=choices.Transport.choices, default=choices.Transport.SSH)
    ssh_port = serializers.IntegerField(min_value=1, max_value=65535, default=22)
    ssh_user = serializers.CharField(max_length=64, default="root")
    password = serializers.CharField(
        required=False, allow_blank=True, write_only=True, style={"input_type": "password"}
    )
    private_key = serializers.CharField(required=False, allow_blank=True, write_only=True)
    host_key_fingerprint = serializers.CharField(max_length=128, validators=[fingerprint_validator], required=False)
    name = serializers.CharField(max_length=models.NAME_MAX, required=False, allow_null=True)
    server_pool = pk_field(models.ServerPool.objects.all(), required=False, allow_null=True)
    rediscover = serializers.BooleanField(
        default=False,
        help_text=_(
            "Read a known server (this host and port) again, with the credentials given (change permission on "
            "it). Without it a known host and port is refused (409): a discovery never rewrites a server."
        ),
    )

    def validate(self, attrs):
        if attrs["transport"] == choices.Transport.SSH:
            # The host key is pinned from the start: never learned on first use.
            if not attrs.get("host_key_fingerprint"):
                raise serializers.ValidationError({"host_key_fingerprint": [_("Required for SSH.")]})
            if not (attrs.get("password") or attrs.get("private_key")):
                raise serializers.ValidationError({"password": [_("Give a password or a private key for SSH.")]})
        return attrs
