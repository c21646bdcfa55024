"""Servers: discover, edit, forget."""

from __future__ import annotations

from django.db import transaction
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.inventory import models
from ovmweb.inventory.permissions import authorize_server_discover

from .. import serializers as s
from .base import RESPONSES_409, RESPONSES_JOB, ReadOnlyApiViewSet, job_response, service, validated


@extend_schema_view(
    partial_update=extend_schema(
        request=s.ServerUpdateSerializer, responses={200: s.ServerSerializer, **RESPONSES_409}
    ),
    destroy=extend_schema(request=None, responses={k: v for k, v in RESPONSES_JOB.items() if k != 400}),
)
class ServerViewSet(mixins.UpdateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.Server.objects.all()
    serializer_class = s.ServerSerializer
    permission_noun = "server"
    # Who may add servers or change them may ask; which of the two it is depends on the host and port.
    permission_actions = {"discover": ("server.discover", "server.rediscover"), "maintenance": "server.change"}
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def partial_update(self, request, *args, **kwargs):
        server = self.get_object()
        data = validated(s.ServerUpdateSerializer, request, partial=True, instance=server)
        servers = service("servers")
        with transaction.atomic():
            if "inbound_migration_lock" in data:
                servers.server_set_inbound_lock(
                    server=server, user=request.user, locked=data.pop("inbound_migration_lock")
                )
            if data:
                servers.server_update(server=server, user=request.user, **data)
        server.refresh_from_db()
        return Response(s.ServerSerializer(server).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        """Forget a server (OVM Manager's Delete); 202 with the job that removes ovmweb's SSH key
        from it. 409 while a VM on it is not stopped or while it owns local repositories."""
        return job_response(service("servers").server_delete(server=self.get_object(), user=request.user))

    @extend_schema(request=s.ServerMaintenanceSerializer, responses={200: s.ServerSerializer, **RESPONSES_JOB})
    @action(detail=True, methods=["post"])
    def maintenance(self, request, pk=None, format=None):
        """Put the server in maintenance (``on``: true; 202 with the job that live-migrates its running
        VMs away one after another) or take it out (200). 409 unless it is RUNNING, resp. in maintenance
        (``maintenance``: true; a server that is UNREACHABLE meanwhile stays in maintenance)."""
        server = self.get_object()
        data = validated(s.ServerMaintenanceSerializer, request)
        job = service("maintenance").server_set_maintenance(server=server, user=request.user, on=data["on"])
        if job is not None:
            return job_response(job)
        server.refresh_from_db()
        return Response(s.ServerSerializer(server).data)

    @extend_schema(request=s.ServerDiscoverSerializer, responses=RESPONSES_JOB)
    @action(detail=False, methods=["post"])
    def discover(self, request, format=None):
        """Discover a server: SSH in with its pinned host key, read its hardware and hypervisor.

        A host and port that is already a server is refused (409) unless ``rediscover`` is
        true and the user may change that server; its new credentials replace the old ones
        only when the job succeeds."""
        data = validated(s.ServerDiscoverSerializer, request)
        authorize_server_discover(
            request.user, hostname=data["hostname"], ssh_port=data["ssh_port"], rediscover=data["rediscover"]
        )
        job = service("servers").server_discover(user=request.user, **data)
        return job_response(job)
