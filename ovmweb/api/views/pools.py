"""Server pools, processor compatibility groups and anti-affinity groups."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.inventory import models
from ovmweb.inventory.permissions import authorize
from ovmweb.inventory.services import pools as pool_services

from .. import serializers as s
from .base import RESPONSES_409, ApiViewSet, validated
from .roles import PoolRolesMixin


@extend_schema_view(destroy=extend_schema(responses={204: None, **RESPONSES_409}))
class ServerPoolViewSet(PoolRolesMixin, viewsets.ModelViewSet, ApiViewSet):
    queryset = models.ServerPool.objects.all()
    serializer_class = s.ServerPoolSerializer
    permission_noun = "pool"
    permission_actions = {"roles": "pool.view", "role_remove": "pool.roles", "policies": "pool.view"}
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = pool_services.server_pool_create(user=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = pool_services.server_pool_update(
            pool=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.server_pool_delete(pool=instance, user=self.request.user)

    @extend_schema(methods=["get"], request=None, responses={200: s.PoolPoliciesSerializer})
    @extend_schema(methods=["post"], request=s.PoolPoliciesSerializer, responses={200: s.PoolPoliciesSerializer})
    @action(detail=True, methods=["get", "post"])
    def policies(self, request, pk=None, format=None):
        """DRS and DPM of the pool (GET), set (POST, change permission on the pool); ``ha_warning``
        says why HA cannot be enabled there (servers without disk leases)."""
        pool = self.get_object()
        if request.method == "POST":
            authorize(request.user, "pool.change", pool)
            data = validated(s.PoolPoliciesSerializer, request, partial=True, instance=pool)
            pool = pool_services.server_pool_set_policies(pool=pool, user=request.user, **data)
        return Response(s.PoolPoliciesSerializer(pool).data)


@extend_schema_view(destroy=extend_schema(responses={204: None, **RESPONSES_409}))
class ProcessorCompatibilityGroupViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.ProcessorCompatibilityGroup.objects.prefetch_related("servers").order_by("name")
    serializer_class = s.ProcessorCompatibilityGroupSerializer
    permission_noun = "compatibility_group"

    def perform_create(self, serializer):
        serializer.instance = pool_services.compatibility_group_create(
            user=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = pool_services.compatibility_group_update(
            group=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.compatibility_group_delete(group=instance, user=self.request.user)


class AntiAffinityGroupViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.AntiAffinityGroup.objects.prefetch_related("vms").order_by("server_pool_id", "name")
    serializer_class = s.AntiAffinityGroupSerializer
    permission_noun = "anti_affinity_group"

    def perform_create(self, serializer):
        serializer.instance = pool_services.anti_affinity_group_create(
            user=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = pool_services.anti_affinity_group_update(
            group=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.anti_affinity_group_delete(group=instance, user=self.request.user)
