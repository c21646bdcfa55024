"""Roles on a server pool: ``GET/POST /api/v1/server-pools/{id}/roles/`` and
``DELETE /api/v1/server-pools/{id}/roles/{role_id}/``.

Reading who holds which role needs ``pool.view`` on the pool; granting and removing need
``pool.roles`` (an Administrator of the pool, or the model permissions on role assignments).
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.inventory.permissions import authorize

from ..mixins import StrictSerializer
from .base import RESPONSES_409, service, validated


class RoleAssignmentSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True, default=None)
    group_name = serializers.CharField(source="group.name", read_only=True, default=None)

    class Meta:
        model = RoleAssignment
        fields = ["id", "role", "user", "username", "group", "group_name", "server_pool", "granted_by", "created_at"]
        read_only_fields = fields


class RoleGrantSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)
    user = serializers.PrimaryKeyRelatedField(queryset=get_user_model().objects.all(), required=False)
    group = serializers.PrimaryKeyRelatedField(queryset=Group.objects.all(), required=False)

    def validate(self, attrs):
        if ("user" in attrs) == ("group" in attrs):
            raise serializers.ValidationError("Name one user or one group.")
        return attrs


class PoolRolesMixin:
    """The roles routes of the server pool viewset."""

    @extend_schema(
        methods=["get"], request=None, responses={200: RoleAssignmentSerializer(many=True)}, operation_id="pool_roles"
    )
    @extend_schema(
        methods=["post"],
        request=RoleGrantSerializer,
        responses={201: RoleAssignmentSerializer, **RESPONSES_409},
        operation_id="pool_roles_grant",
    )
    @action(detail=True, methods=["get", "post"], pagination_class=None)
    def roles(self, request, pk=None, format=None):
        """Who holds which role on this pool (GET); grant a role to a user or a group (POST)."""
        pool = self.get_object()
        if request.method == "GET":
            rows = pool.role_assignments.select_related("user", "group")
            return Response(RoleAssignmentSerializer(rows, many=True).data)
        authorize(request.user, "pool.roles", pool)
        data = validated(RoleGrantSerializer, request)
        row = service("roles").role_grant(
            user=request.user,
            pool=pool,
            role=data["role"],
            grantee_user=data.get("user"),
            grantee_group=data.get("group"),
        )
        return Response(RoleAssignmentSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"roles/(?P<role_id>[0-9]+)")
    def role_remove(self, request, pk=None, role_id=None, format=None):
        """Remove one role from this pool."""
        pool = self.get_object()
        row = get_object_or_404(RoleAssignment, pk=role_id, server_pool=pool)
        service("roles").role_revoke(user=request.user, assignment=row)
        return Response(status=status.HTTP_204_NO_CONTENT)
