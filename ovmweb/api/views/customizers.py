"""Clone customizers of a VM."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets

from ovmweb.inventory import models
from ovmweb.inventory.permissions import authorize

from .. import serializers as s
from .base import ApiViewSet, service


@extend_schema_view(
    update=extend_schema(request=s.CloneCustomizerUpdateSerializer, responses={200: s.CloneCustomizerSerializer}),
    partial_update=extend_schema(
        request=s.CloneCustomizerUpdateSerializer, responses={200: s.CloneCustomizerSerializer}
    ),
)
class CloneCustomizerViewSet(viewsets.ModelViewSet, ApiViewSet):
    """Clone customizers of a VM: per-disk target repository and clone type, network of each
    VNIC. An update keeps the VM; ``disks``/``networks``, when given, replace the whole list."""

    queryset = models.CloneCustomizer.objects.prefetch_related("disks", "networks")
    serializer_class = s.CloneCustomizerSerializer
    permission_noun = "customizer"

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.CloneCustomizerUpdateSerializer
        return s.CloneCustomizerSerializer

    @staticmethod
    def _items(data: dict) -> dict:
        for key in ("disks", "networks"):
            if key in data:
                data[key] = [dict(item) for item in data[key]]
        return data

    def perform_create(self, serializer):
        data = self._items(dict(serializer.validated_data))
        # The object of a new customizer is its VM (change permission on it).
        authorize(self.request.user, "customizer.create", data.get("vm"))
        serializer.instance = service("customizers").customizer_create(user=self.request.user, **data)

    def perform_update(self, serializer):
        data = self._items(dict(serializer.validated_data))
        serializer.instance = service("customizers").customizer_update(
            customizer=serializer.instance, user=self.request.user, **data
        )

    def perform_destroy(self, instance):
        service("customizers").customizer_delete(customizer=instance, user=self.request.user)
