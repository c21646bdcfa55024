"""Parts of a VM changed from its edit page: VNICs added and removed, disks and ISOs
attached and detached. Each asks its own action (``vnic.create``, ``vm.disk_attach``...)
of ovmweb.inventory.permissions, and the edit page shows the outcome."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from ovmweb.inventory.models import VmDiskSlot, Vnic

from .. import ui
from ..forms import vms as vm_forms
from .common import allowed, require
from .vms import access_vm, services


@login_required
@allowed("vnic.create")
@require_POST
def vnic_add(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "change")
    require(request, "vnic.create", vm)
    form = vm_forms.VnicAddForm(request.POST, vm=vm)
    if form.is_valid():
        ui.call_service(
            request,
            lambda: services("vnics").vnic_create(
                vm=vm,
                user=request.user,
                network=form.cleaned_data["network"],
                model=form.cleaned_data["model"] or None,
                mac=form.cleaned_data["mac"] or None,
            ),
            success=_("VNIC added."),
        )
    else:
        for field, errs in form.errors.items():
            for e in errs:
                messages.error(request, f"{form.fields[field].label if field in form.fields else ''}: {e}")
    return redirect("web:vm_edit", vm_id=vm.pk)


def _remove_part(request: HttpRequest, model, pk: int, *, action: str, call, success: str, label) -> HttpResponse:
    """Remove a part of a VM (a VNIC, a slot's disk) from its edit page: ``action`` on the part
    (``vnic.delete``) or on its VM (``vm.disk_detach``), the service does it, and the edit page
    shows the outcome."""
    part = get_object_or_404(model, pk=pk)
    vm = access_vm(request, part.vm_id, action if action.startswith("vm.") else "change")
    require(request, action, vm if action.startswith("vm.") else part)
    ui.call_service(request, lambda: call(part), success=success % label(part))
    return redirect("web:vm_edit", vm_id=part.vm_id)


@login_required
@allowed("vnic.delete")
@require_POST
def vnic_delete(request: HttpRequest, vnic_id: int) -> HttpResponse:
    return _remove_part(
        request,
        Vnic,
        vnic_id,
        action="vnic.delete",
        call=lambda vnic: services("vnics").vnic_delete(vnic=vnic, user=request.user),
        success=_("VNIC %(mac)s removed."),
        label=lambda vnic: {"mac": vnic.mac},
    )


@login_required
@allowed("vm.disk_attach")
@require_POST
def disk_attach(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "disk_attach")
    form = vm_forms.DiskAttachForm(request.POST, vm=vm)
    if form.is_valid():
        d = form.cleaned_data
        ui.call_service(
            request,
            lambda: services("vm_devices").vm_disk_attach(
                vm=vm, user=request.user, virtual_disk=d["virtual_disk"], iso=d["iso"]
            ),
            success=_("Attached."),
        )
    else:
        messages.error(request, _("Choose a virtual disk or an ISO file."))
    return redirect("web:vm_edit", vm_id=vm.pk)


@login_required
@allowed("vm.disk_detach")
@require_POST
def disk_detach(request: HttpRequest, slot_id: int) -> HttpResponse:
    return _remove_part(
        request,
        VmDiskSlot,
        slot_id,
        action="vm.disk_detach",
        call=lambda slot: services("vm_devices").vm_disk_detach(slot=slot, user=request.user),
        success=_("Slot %(n)s detached."),
        label=lambda slot: {"n": slot.slot},
    )
