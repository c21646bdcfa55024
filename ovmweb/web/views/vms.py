"""Servers and VMs: the virtual machine perspective, its toolbar and row details,
VM actions, create wizard and edit."""

from __future__ import annotations

import importlib
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST, require_safe

from ovmweb.errors import Conflict
from ovmweb.inventory.choices import VmAction
from ovmweb.inventory.models import Server, ServerPool, VirtualMachine

from .. import paging, selectors, ui
from ..forms import vm_operations as operation_forms
from ..forms import vms as vm_forms
from .common import allowed, int_or_none, render_page

PAGE_SIZES = (25, 50, 100, 200)
# Sort keys offered by the table headers -> ORM ordering.
SORTS = {
    "name": "name",
    "status": "status",
    "domain_type": "domain_type",
    "server": "server__name",
    "pool": "server_pool__name",
    "vcpus": "vcpus",
    "memory": "memory_mib",
    "os": "os_type",
    "created": "created_at",
}


def services(name: str):
    """The inventory service module ``name`` (imported on use: the web layer only calls services)."""
    return importlib.import_module(f"ovmweb.inventory.services.{name}")


def inventory_selectors():
    return importlib.import_module("ovmweb.inventory.selectors")


def inventory_permissions():
    return importlib.import_module("ovmweb.inventory.permissions")


def access_vm(request: HttpRequest, vm_id: int, action: str = "view") -> VirtualMachine:
    return inventory_selectors().access_vm(request.user, vm_id, action)


def safe_next(request: HttpRequest, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def _vm_table_context(request: HttpRequest) -> dict:
    q = (request.GET.get("q") or "").strip()[:128]
    sort = request.GET.get("sort") or "name"
    key = sort.lstrip("-")
    if key not in SORTS:
        sort, key = "name", "name"
    ordering = ("-" if sort.startswith("-") else "") + SORTS[key]
    pool = server = None
    # The page names the pool or server it filters by: only one the user may see.
    perms = inventory_permissions()
    if (pool_id := int_or_none(request.GET.get("pool"))) is not None:
        pool = perms.scope(request.user, "pool.view", ServerPool.objects.all()).filter(pk=pool_id).first()
    if (server_id := int_or_none(request.GET.get("server"))) is not None:
        server = perms.scope(request.user, "server.view", Server.objects.all()).filter(pk=server_id).first()
    per = int_or_none(request.GET.get("per")) or 50
    if per not in PAGE_SIZES:
        per = 50
    sel = inventory_selectors()
    qs = sel.vm_list(
        user=request.user,
        search=q or None,
        pool=pool,
        server=server,
        ordering=ordering if ordering in sel.ORDERINGS else None,
    )
    if ordering not in sel.ORDERINGS:
        # Columns the selector does not sort by: re-order its (permission-filtered) queryset.
        qs = qs.order_by(ordering, "id")
    # Keyset by default (the last page costs what the first does); ?page=N by offset.
    page = paging.cursor_page(request, qs, per) or Paginator(qs, per).get_page(request.GET.get("page"))
    params = {
        k: v
        for k, v in {
            "q": q,
            "pool": pool.pk if pool else "",
            "server": server.pk if server else "",
            "per": per if per != 50 else "",
        }.items()
        if v
    }
    return {
        "page": page,
        "cursor_paging": isinstance(page, paging.CursorPage),
        "vms": list(page.object_list),
        "q": q,
        "sort": sort,
        "sort_key": key,
        "descending": sort.startswith("-"),
        "pool": pool,
        "server": server,
        "per": per,
        "page_sizes": PAGE_SIZES,
        "base_query": urlencode(params),
        "sort_query": urlencode({**params, "sort": sort}),
        "columns": [
            ("name", _("Name")),
            ("status", _("Status")),
            ("domain_type", _("Domain type")),
            ("server", _("Server")),
            ("pool", _("Server pool")),
            ("vcpus", _("vCPUs")),
            ("memory", _("Memory")),
            ("os", _("Operating system")),
        ],
    }


@login_required
@allowed("vm.view")
@require_safe
def vm_list(request: HttpRequest) -> HttpResponse:
    context = _vm_table_context(request)
    context["selected"] = None
    if (sel := int_or_none(request.GET.get("selected"))) is not None:
        try:
            context["selected"] = access_vm(request, sel)
        except (Http404, PermissionDenied):
            context["selected"] = None
    context["toolbar"] = ui.vm_toolbar(context["selected"])
    context["perspective"] = "vms"
    return render_page(request, "web/vms/list.html", context, partial="web/vms/_table.html", section="servers")


@login_required
@allowed("vm.view")
@require_safe
def vm_row(request: HttpRequest, vm_id: int) -> HttpResponse:
    try:
        vm = access_vm(request, vm_id)
    except Http404:
        return HttpResponse("")  # the VM was deleted elsewhere: the row disappears
    return render(request, "web/vms/_row.html", {"vm": vm, "selected_id": int_or_none(request.GET.get("selected"))})


@login_required
@allowed("vm.view")
@require_safe
def vm_detail(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id)
    events = list(selectors.event_list(user=request.user, obj=vm)[:5])
    return render(request, "web/vms/_detail.html", {"vm": vm, "events": events})


@login_required
@allowed("vm.view")
@require_safe
def vm_toolbar(request: HttpRequest) -> HttpResponse:
    vm = None
    if (vm_id := int_or_none(request.GET.get("vm"))) is not None:
        try:
            vm = access_vm(request, vm_id)
        except Http404:
            vm = None
    return render(request, "web/vms/_toolbar.html", {"selected": vm, "toolbar": ui.vm_toolbar(vm)})


@login_required
@allowed(*(f"vm.{action}" for action in VmAction.values))
@require_POST
def vm_action(request: HttpRequest, vm_id: int, action: str) -> HttpResponse:
    if action not in VmAction.values:
        raise Http404
    vm = access_vm(request, vm_id, action)
    back = safe_next(request, reverse("web:vm_list") + f"?selected={vm.pk}")
    ok, job = ui.call_service(request, lambda: services("vms").vm_action(vm=vm, action=action, user=request.user))
    if ok:
        messages.success(
            request,
            _("%(action)s of %(vm)s queued as job #%(job)s.")
            % {"action": VmAction(action).label, "vm": vm.name, "job": job.pk},
        )
    return redirect(back)


@login_required
@allowed("vm.delete")
@require_POST
def vm_delete(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "delete")
    ok, job = ui.call_service(request, lambda: services("vms").vm_delete(vm=vm, user=request.user))
    if ok:
        messages.success(request, _("Deletion of %(vm)s queued as job #%(job)s.") % {"vm": vm.name, "job": job.pk})
        return redirect("web:vm_list")
    return redirect(safe_next(request, reverse("web:vm_list") + f"?selected={vm.pk}"))


# Where the clone and move forms' customizers come from (the VM toolbar's page).
CUSTOMIZERS_NOTE = gettext_lazy(
    "Clone customizers are created and edited under Clone Customizers… in the virtual machine toolbar."
)


def _selected_url(vm) -> str:
    return reverse("web:vm_list") + f"?selected={vm.pk}"


@login_required
@allowed("vm.migrate")
def vm_migrate(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "migrate")
    form = operation_forms.MigrateForm(request.POST if request.method == "POST" else None, vm=vm)
    # Only the pools where the user may migrate VMs to (a role there, or the model permission).
    if "target_pool" in form.fields:  # a cold migration
        field = form.fields["target_pool"]
        field.queryset = inventory_permissions().scope(request.user, "vm.migrate", field.queryset)
    if request.method == "POST" and form.is_valid():
        ok, job = ui.call_service(
            request,
            lambda: services("vm_migration").vm_migrate(vm=vm, user=request.user, **form.service_kwargs()),
            form=form,
            field_map={"target_server": "target_server", "server": "target_server"},
        )
        if ok:
            messages.success(request, _("Migration of %(vm)s queued as job #%(job)s.") % {"vm": vm.name, "job": job.pk})
            return redirect(_selected_url(vm))
    return render_page(request, "web/vms/migrate.html", {"vm": vm, "form": form}, section="servers")


def _action_form_page(
    request: HttpRequest,
    vm,
    *,
    form,
    title: str,
    intro: str,
    submit: str,
    call,
    done: str,
    field_map: dict | None = None,
    notes: list[str] = (),
) -> HttpResponse:
    """A VM operation behind a small form: on a valid POST call the service, report its job."""
    if request.method == "POST" and form.is_valid():
        ok, job = ui.call_service(request, lambda: call(form.cleaned_data), form=form, field_map=field_map or {})
        if ok:
            messages.success(request, done % {"vm": vm.name, "job": job.pk})
            return redirect(_selected_url(vm))
    return render_page(
        request,
        "web/vms/action_form.html",
        {"vm": vm, "form": form, "title": title, "intro": intro, "submit": submit, "notes": notes},
        section="servers",
    )


@login_required
@allowed("vm.clone")
def vm_clone(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "clone")
    as_template = request.GET.get("as_template") == "1"
    initial = {"name": f"{vm.name}-{'template' if as_template else 'clone'}", "as_template": as_template}
    form = operation_forms.CloneForm(request.POST if request.method == "POST" else None, vm=vm, initial=initial)
    notes = [_("A simple clone does not copy an attached ISO (CD-ROM)."), CUSTOMIZERS_NOTE]
    if vm.status == "RUNNING":
        notes.append(
            _(
                "%(vm)s is running: this is a hot clone, only possible as a thin clone of every disk, and its "
                "disks are in an inconsistent state (repair them, e.g. with fsck, before use)."
            )
            % {"vm": vm.name}
        )
    return _action_form_page(
        request,
        vm,
        form=form,
        title=_("Save as Template") if as_template else _("Clone Virtual Machine"),
        intro=_("Creates a new virtual machine (or template) from %(vm)s; its disks are copied by a job.")
        % {"vm": vm.name},
        submit=_("Save as Template") if as_template else _("Clone"),
        call=lambda d: services("vm_copies").vm_clone(
            vm=vm,
            user=request.user,
            name=d["name"],
            customizer=d["customizer"],
            server_pool=d["server_pool"],
            as_template=d["as_template"],
        ),
        done=_("Clone of %(vm)s queued as job #%(job)s."),
        notes=notes,
    )


@login_required
@allowed("vm.backup")
def vm_backup(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "backup")
    form = operation_forms.BackupForm(request.POST if request.method == "POST" else None)
    notes = [
        _("The backup is a virtual machine named “%(vm)s-backup-<UTC date and time>”, left stopped.") % {"vm": vm.name}
    ]
    if vm.status == "RUNNING":
        notes.append(
            _(
                "%(vm)s is running: the backup is a hot clone with thin disks (overlays on the running disks, "
                "in an inconsistent state). Stop it first for a consistent cold backup."
            )
            % {"vm": vm.name}
        )
    return _action_form_page(
        request,
        vm,
        form=form,
        title=_("Back Up Virtual Machine"),
        intro=_(
            "Backs %(vm)s up as a cold clone (seed 7.17): its configuration and a copy of every disk go to the "
            "repository you choose."
        )
        % {"vm": vm.name},
        submit=_("Back Up"),
        call=lambda d: services("vm_copies").vm_backup(vm=vm, user=request.user, repository=d["repository"]),
        done=_("Backup of %(vm)s queued as job #%(job)s."),
        notes=notes,
    )


@login_required
@allowed("vm.move")
def vm_move(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "move")
    form = operation_forms.MoveForm(request.POST if request.method == "POST" else None, vm=vm)
    return _action_form_page(
        request,
        vm,
        form=form,
        title=_("Move Virtual Machine"),
        intro=_(
            "Moves the configuration and the virtual disks of %(vm)s to another repository; only while it is "
            "stopped. Shareable disks and ISOs are copied, not moved."
        )
        % {"vm": vm.name},
        submit=_("Move"),
        call=lambda d: services("vm_copies").vm_move(
            vm=vm, user=request.user, customizer=d["customizer"], target_repository=d["target_repository"]
        ),
        done=_("Move of %(vm)s queued as job #%(job)s."),
        notes=[
            _(
                "A virtual machine with disks cannot move from one local repository to another: move it through a "
                "shared repository."
            ),
            CUSTOMIZERS_NOTE,
        ],
    )


@login_required
@allowed("vm.export")
def vm_export(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "export")
    form = operation_forms.ConfirmForm(request.POST if request.method == "POST" else None)
    where = f"{vm.repository.path}/Assemblies/" if vm.repository else _("(no repository)")
    return _action_form_page(
        request,
        vm,
        form=form,
        title=_("Export Virtual Machine"),
        intro=_(
            "Exports %(vm)s as an OVA (OVF descriptor, SHA-256 manifest and streamOptimized VMDK disks) into "
            "its repository: %(where)s<name>-<UTC time>.ova. Other tools import it, and so does "
            "Import Virtual Appliance."
        )
        % {"vm": vm.name, "where": where},
        submit=_("Export"),
        call=lambda d: services("vm_copies").vm_export(vm=vm, user=request.user),
        done=_("Export of %(vm)s queued as job #%(job)s."),
        notes=[
            _(
                "Only a stopped virtual machine can be exported, more than once if you like; at most four exports run "
                "at once and the others wait. An aborted or failed export can be resumed from its job without "
                "converting finished disks again. Exporting to Oracle Cloud Infrastructure (the Oracle VM Exporter "
                "Appliance) is not available here."
            )
        ],
    )


@login_required
@allowed("vm.message")
def vm_messages(request: HttpRequest, vm_id: int) -> HttpResponse:
    """Send key/value messages into a running guest (seed 7.10): one job per message."""
    vm = access_vm(request, vm_id, "message")
    formset = operation_forms.MessageFormSet(request.POST if request.method == "POST" else None, prefix="msg")
    if request.method == "POST" and formset.is_valid():
        rows = [(i, f.cleaned_data) for i, f in enumerate(formset.forms) if f.has_changed() and not f.is_blank()]
        batch = [{"key": d["key"], "value": d["value"], "hidden": d["hidden"], "log": d["log"]} for _i, d in rows]
        try:
            jobs = services("messages").vm_send_messages(vm=vm, user=request.user, messages=batch)
        except ValidationError as exc:
            _message_errors(formset, rows, exc)
        except (Conflict, PermissionDenied) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request,
                _("%(n)d message(s) to %(vm)s queued as job(s) %(jobs)s.")
                % {"n": len(jobs), "vm": vm.name, "jobs": ", ".join(f"#{j.pk}" for j in jobs)},
            )
            return redirect(_selected_url(vm))
    from ovmweb.inventory import rules

    limits = {
        "key": rules.MESSAGE_KEY_MAX_BYTES,
        "logged": rules.MESSAGE_VALUE_MAX_BYTES_LOGGED,
        "unlogged": rules.MESSAGE_VALUE_MAX_BYTES_UNLOGGED,
    }
    return render_page(
        request, "web/vms/messages.html", {"vm": vm, "formset": formset, "limits": limits}, section="servers"
    )


def _message_errors(formset, rows, exc: ValidationError) -> None:
    """Service errors ``messages[i].field`` go back to row i's field."""
    if not hasattr(exc, "error_dict"):
        formset.forms[0].add_error(None, exc)
        return
    for key, errors in exc.message_dict.items():
        index, _sep, field = key.partition("].")
        try:
            form = formset.forms[rows[int(index.removeprefix("messages["))][0]]
        except (ValueError, IndexError):
            for e in errors:
                formset.forms[0].add_error(None, e)
            continue
        for e in errors:
            form.add_error(field if field in form.fields else None, e)


@login_required
@allowed("vm.create")
def vm_create_start(request: HttpRequest) -> HttpResponse:
    return render_page(request, "web/vms/create_start.html", {"sources": vm_forms.SOURCES}, section="servers")


@login_required
@allowed("vm.create")
def vm_create(request: HttpRequest, source: str) -> HttpResponse:
    if source not in vm_forms.SOURCE_KINDS:
        raise Http404
    form = vm_forms.VmCreateForm(
        request.POST if request.method == "POST" else None,
        source=source,
        initial=vm_forms.VmCreateForm.initial_from(source, request.GET),
    )
    if request.method == "POST" and form.is_valid():
        kwargs = form.service_kwargs()
        # From any source: the source (template, VM, appliance VM, ISO) must be one the user may see.
        inventory_permissions().authorize_vm_create(request.user, kwargs["source"])
        ok, vm = ui.call_service(
            request,
            lambda: services("vms").vm_create(user=request.user, **kwargs),
            form=form,
            field_map=vm_forms.VmCreateForm.SERVICE_FIELD_MAP | {"source": form.source_field},
        )
        if ok:
            messages.success(request, _("Virtual machine %(vm)s created.") % {"vm": vm.name})
            return redirect(reverse("web:vm_list") + f"?selected={vm.pk}&q={vm.name}")
    return render_page(
        request, "web/vms/create.html", {"form": form, "source": vm_forms.SOURCE_KINDS[source]}, section="servers"
    )


@login_required
@allowed("vm.change")
def vm_edit(request: HttpRequest, vm_id: int) -> HttpResponse:
    vm = access_vm(request, vm_id, "change")
    form = vm_forms.VmEditForm(request.POST if request.method == "POST" else None, vm=vm)
    if request.method == "POST" and form.is_valid():
        changes = form.changes()
        if not changes:
            messages.info(request, _("Nothing changed."))
            return redirect("web:vm_edit", vm_id=vm.pk)
        ok, updated = ui.call_service(
            request, lambda: services("vms").vm_update(vm=vm, user=request.user, **changes), form=form
        )
        if ok:
            if updated.pending_changes:
                messages.warning(
                    request,
                    _("Saved. Some changes are pending until %(vm)s is stopped and started again.") % {"vm": vm.name},
                )
            else:
                messages.success(request, _("Virtual machine %(vm)s updated.") % {"vm": vm.name})
            return redirect("web:vm_edit", vm_id=vm.pk)
    context = {
        "vm": vm,
        "form": form,
        "vnic_form": vm_forms.VnicAddForm(vm=vm),
        "disk_form": vm_forms.DiskAttachForm(vm=vm),
        "pending": _pending_rows(vm),
    }
    return render_page(request, "web/vms/edit.html", context, section="servers")


def _pending_rows(vm: VirtualMachine) -> list[dict]:
    rows = []
    for field, value in (vm.pending_changes or {}).items():
        try:
            label = VirtualMachine._meta.get_field(field).verbose_name
        except Exception:  # a pending key that is not a model field (e.g. "disks")
            label = field.replace("_", " ")
        rows.append({"field": field, "label": label, "current": getattr(vm, field, ""), "pending": value})
    return rows
