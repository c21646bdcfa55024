"""Repositories: read, create, present to a server pool."""

from __future__ import annotations

from rest_framework import serializers

from ovmweb.inventory import models

from ..mixins import StrictModelSerializer, StrictSerializer
from .base import pk_field


class RepositorySerializer(serializers.ModelSerializer):
    class Meta:
        model = models.Repository
        fields = [
            "id",
            "name",
            "kind",
            "backend",
            "path",
            "nfs_server",
            "nfs_export",
            "server",
            "server_pools",
            "capacity_bytes",
            "allocation_bytes",
            "available_bytes",
            "refreshed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RepositoryCreateSerializer(StrictModelSerializer):
    server_pools = pk_field(models.ServerPool.objects.all(), many=True, required=False)

    class Meta:
        model = models.Repository
        fields = ["name", "kind", "backend", "path", "nfs_server", "nfs_export", "server", "server_pools"]
        extra_kwargs = {"kind": {"required": True}}
        # The database check constraints are rules the service explains itself.
        validators = []


class RepositoryPresentSerializer(StrictSerializer):
    server_pool = pk_field(models.ServerPool.objects.all())
