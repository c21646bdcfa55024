"""Standalone console pages: noVNC for the VM's screen, xterm.js for its serial port."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpResponseNotAllowed
from django.shortcuts import render
from django.views.decorators.csrf import ensure_csrf_cookie

from ovmweb.consoles import services
from ovmweb.consoles.models import ConsoleKind
from ovmweb.inventory.selectors import access_vm


def _page(request, vm_id: int, kind: str, template: str):
    vm = access_vm(request.user, vm_id, "console")
    if request.method not in ("GET", "HEAD"):
        # After the permission check: who may not see the VM gets 403 whatever the method.
        return HttpResponseNotAllowed(["GET", "HEAD"])
    return render(
        request,
        template,
        {
            "vm": vm,
            "kind": kind,
            "read_only": not services.can_interact(request.user, vm),
            "ticket_url": f"/api/v1/vms/{vm.pk}/console-tickets/",
            "vm_url": f"/api/v1/vms/{vm.pk}/",
        },
    )


@login_required
@ensure_csrf_cookie
def vnc_console(request, vm_id: int):
    return _page(request, vm_id, ConsoleKind.VNC, "consoles/vnc.html")


@login_required
@ensure_csrf_cookie
def serial_console(request, vm_id: int):
    return _page(request, vm_id, ConsoleKind.SERIAL, "consoles/serial.html")
