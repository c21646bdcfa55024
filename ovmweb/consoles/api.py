"""REST endpoint issuing console tickets: POST /api/v1/vms/{id}/console-tickets/."""

from __future__ import annotations

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ovmweb.api.mixins import StrictSerializer
from ovmweb.api.views.base import ActionPermission
from ovmweb.consoles import services
from ovmweb.consoles.models import ConsoleKind
from ovmweb.inventory.selectors import access_vm


class ConsoleTicketRequestSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=ConsoleKind.choices, help_text=_("vnc or serial"))


class ConsoleTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField(help_text=_("Single use; valid until expires_at. Shown only once."))
    kind = serializers.ChoiceField(choices=ConsoleKind.choices)
    vm = serializers.IntegerField()
    read_only = serializers.BooleanField()
    expires_at = serializers.DateTimeField()
    ws_url = serializers.CharField(help_text=_("WebSocket URL to open, ticket included."))
    session_seconds = serializers.IntegerField(help_text=_("How long the console session lasts once opened."))


def websocket_path(*, vm_id: int, kind: str) -> str:
    # Mirrors ovmweb/consoles/routing.py (Channels routes are not reversible).
    return f"/ws/console/{kind}/{vm_id}/"


def websocket_url(request, *, vm_id: int, kind: str, token: str) -> str:
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}{websocket_path(vm_id=vm_id, kind=kind)}?ticket={token}"


class ConsoleTicketCreateView(APIView):
    """Issue a console ticket for a running VM (409 when the VM has no console now)."""

    # Who may not open the VM's console learns nothing here, whatever the method (403, not 405).
    permission_classes = [IsAuthenticated, ActionPermission]
    permission_actions = {"POST": "vm.console", "GET": "vm.console"}

    @extend_schema(request=ConsoleTicketRequestSerializer, responses={201: ConsoleTicketSerializer})
    def post(self, request, pk: int):
        vm = access_vm(request.user, pk, "console")  # first: another pool's VM is a 404 whatever the input
        data = ConsoleTicketRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        kind = data.validated_data["kind"]
        ticket, token = services.ticket_issue(user=request.user, vm=vm, kind=kind)
        body = {
            "ticket": token,
            "kind": kind,
            "vm": vm.pk,
            "read_only": ticket.read_only,
            "expires_at": ticket.expires_at,
            "ws_url": websocket_url(request, vm_id=vm.pk, kind=kind, token=token),
            "session_seconds": int(settings.OVMWEB_CONSOLE_SESSION_LIFETIME),
        }
        response = Response(ConsoleTicketSerializer(body).data, status=status.HTTP_201_CREATED)
        # The ticket is a credential: keep it out of every cache.
        response["Cache-Control"] = "no-store"
        return response


class ConsoleViewersView(APIView):
    """Who has this VM's consoles open now (the console page shows the others)."""

    permission_classes = [IsAuthenticated, ActionPermission]
    permission_actions = {"GET": "vm.console"}

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request, pk: int):
        access_vm(request.user, pk, "console")
        return Response({"viewers": services.session_viewers(vm_id=pk)})
