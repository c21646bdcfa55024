"""Networks, the MAC address range, and VNICs."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from ovmweb.inventory import models
from ovmweb.inventory.permissions import authorize

from .. import serializers as s
from ..schema import StrictAutoSchema
from .base import RESPONSES_409, ActionPermission, ApiViewSet, ReadOnlyApiViewSet, service, validated


class NetworkViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.Network.objects.prefetch_related("server_pools")
    serializer_class = s.NetworkSerializer
    permission_noun = "network"

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        data["server_pools"] = list(data.get("server_pools", ()))
        serializer.instance = service("networks").network_create(user=self.request.user, **data)

    def perform_update(self, serializer):
        serializer.instance = service("networks").network_update(
            network=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        service("networks").network_delete(network=instance, user=self.request.user)


class MacRangeView(APIView):
    """The one MAC address range VNIC addresses are allocated from (seed 7.4)."""

    permission_classes = [permissions.IsAuthenticated, ActionPermission]
    permission_actions = {"GET": "mac_range.view", "PUT": "mac_range.change"}
    schema = StrictAutoSchema()
    serializer_class = s.MacRangeSerializer

    def _current(self) -> dict:
        current = service("vnics").mac_range_get()
        return {"start": current.start, "end": current.end}

    @extend_schema(responses=s.MacRangeSerializer)
    def get(self, request):
        return Response(self._current())

    @extend_schema(request=s.MacRangeSerializer, responses={200: s.MacRangeSerializer, 400: OpenApiResponse()})
    def put(self, request):
        data = validated(s.MacRangeSerializer, request)
        service("vnics").mac_range_set(start=data["start"], end=data["end"])
        return Response(self._current())


@extend_schema_view(
    create=extend_schema(request=s.VnicCreateSerializer, responses={201: s.VnicSerializer, **RESPONSES_409}),
    destroy=extend_schema(responses={204: None, **RESPONSES_409}),
)
class VnicViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.Vnic.objects.all()
    serializer_class = s.VnicSerializer
    permission_noun = "vnic"

    def create(self, request, *args, **kwargs):
        data = validated(s.VnicCreateSerializer, request)
        # The object of a new VNIC is its VM (change permission on it).
        authorize(request.user, "vnic.create", data["vm"])
        vnic = service("vnics").vnic_create(user=request.user, **data)
        return Response(s.VnicSerializer(vnic).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        service("vnics").vnic_delete(vnic=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
