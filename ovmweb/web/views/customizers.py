"""Clone customizers of a VM (seed 7.6, 7.7): the "Clone Customizers" page of a VM with
Create, Edit and Delete. Reading needs view permission on the VM and on customizers;
writing needs change permission on the VM and the matching customizer permission."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from ovmweb.inventory.models import CloneCustomizer

from .. import ui
from ..forms import vm_operations as operation_forms
from .common import allowed, render_page, require
from .vms import access_vm, services


@login_required
@allowed("customizer.view")
@require_safe
def customizer_list(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id)
    require(request, "customizer.view", vm)
    customizers = vm.clone_customizers.prefetch_related(
        "disks__slot", "disks__target_repository", "networks__vnic", "networks__network"
    )
    return render_page(request, "web/vms/customizers.html", {"vm": vm, "customizers": customizers}, section="servers")


def _customizer_form_page(request: HttpRequest, vm, *, customizer=None, call, done: str) -> HttpResponse:
    form = operation_forms.CustomizerForm(
        request.POST if request.method == "POST" else None, vm=vm, customizer=customizer
    )
    if request.method == "POST" and form.is_valid():
        ok, saved = ui.call_service(request, lambda: call(form.service_kwargs()), form=form)
        if ok:
            messages.success(request, done % {"name": saved.name, "vm": vm.name})
            return redirect("web:customizer_list", vm_id=vm.pk)
    return render_page(
        request, "web/vms/customizer_form.html", {"vm": vm, "form": form, "customizer": customizer}, section="servers"
    )


@login_required
@allowed("customizer.create")
def customizer_create(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "change")
    require(request, "customizer.create", vm)
    return _customizer_form_page(
        request,
        vm,
        call=lambda kw: services("customizers").customizer_create(vm=vm, user=request.user, **kw),
        done=_("Clone customizer %(name)s of %(vm)s created."),
    )


@login_required
@allowed("customizer.change")
def customizer_edit(request: HttpRequest, customizer_id: int) -> HttpResponse:
    customizer = get_object_or_404(CloneCustomizer, pk=customizer_id)
    vm = access_vm(request, customizer.vm_id, "change")
    require(request, "customizer.change", customizer)
    return _customizer_form_page(
        request,
        vm,
        customizer=customizer,
        call=lambda kw: services("customizers").customizer_update(customizer=customizer, user=request.user, **kw),
        done=_("Clone customizer %(name)s of %(vm)s saved."),
    )


@login_required
@allowed("customizer.delete")
@require_POST
def customizer_delete(request: HttpRequest, customizer_id: int) -> HttpResponse:
    customizer = get_object_or_404(CloneCustomizer, pk=customizer_id)
    access_vm(request, customizer.vm_id, "change")
    require(request, "customizer.delete", customizer)
    vm_id, name = customizer.vm_id, customizer.name
    ui.call_service(
        request,
        lambda: services("customizers").customizer_delete(customizer=customizer, user=request.user),
        success=_("Clone customizer %(name)s deleted.") % {"name": name},
    )
    return redirect("web:customizer_list", vm_id=vm_id)
