"""GET /api/v1/vms/{id}/message-log/: the messages sent into a VM (seed 7.10), newest first.

A hidden value was never stored: the log holds ``********`` in its place; an unlogged
value is not in the log either (empty, ``logged`` false). Reading the log is
``vm_message.view`` on the VM (``ovmweb.inventory.permissions``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import LimitOffsetPagination

from ovmweb.inventory import models as m
from ovmweb.inventory.permissions import scope

from ..schema import StrictAutoSchema
from .base import ActionPermission


class VmMessageLogSerializer(serializers.ModelSerializer):
    value = serializers.CharField(read_only=True, help_text="******** for a hidden value; empty when not logged.")
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = m.VmMessage
        fields = ["id", "key", "value", "hidden", "logged", "result", "job", "user", "created_at"]
        read_only_fields = fields


class _LogPagination(LimitOffsetPagination):
    default_limit = 50
    max_limit = 1000


class VmMessageLogView(GenericAPIView):
    schema = StrictAutoSchema()
    permission_classes = [permissions.IsAuthenticated, ActionPermission]
    permission_actions = {"GET": "vm_message.view"}
    queryset = m.VirtualMachine.objects.all()
    serializer_class = VmMessageLogSerializer
    pagination_class = _LogPagination

    def get_queryset(self):
        return scope(self.request.user, "vm.view", super().get_queryset())

    @extend_schema(responses=VmMessageLogSerializer(many=True))
    def get(self, request, pk=None, format=None):
        vm = self.get_object()
        rows = m.VmMessage.objects.filter(vm=vm).select_related("user").order_by("-created_at", "-id")
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(VmMessageLogSerializer(page, many=True).data)
