"""Servers, repositories, networking: pages that read through selectors and
write through the servers helper's services."""

from __future__ import annotations

import os

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from ovmweb.inventory import permissions
from ovmweb.inventory.choices import VmStatus
from ovmweb.inventory.models import MacAddressRange, Repository, Server, ServerPool, VirtualAppliance, VirtualDisk

from .. import selectors, ui
from ..forms import infrastructure as infra_forms
from ..forms import storage as storage_forms
from .common import allowed, render_page, require
from .vms import inventory_selectors, services


@login_required
@allowed("server.view")
@require_safe
def server_list(request: HttpRequest) -> HttpResponse:
    return render_page(
        request,
        "web/servers/list.html",
        {"servers": selectors.server_list(request.user), "perspective": "servers"},
        section="servers",
    )


@login_required
@allowed("server.view")
@require_safe
def server_detail(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server.objects.select_related("server_pool", "compatibility_group"), pk=server_id)
    require(request, "server.view", server)
    vms = inventory_selectors().vm_list(user=request.user, server=server, ordering="name")[:200]
    events = selectors.event_list(user=request.user, obj=server)[:10]
    return render_page(
        request,
        "web/servers/detail.html",
        {"server": server, "vms": vms, "events": events, "perspective": "servers"},
        section="servers",
    )


@login_required
@allowed("pool.view")
@require_safe
def pool_detail(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = get_object_or_404(ServerPool, pk=pool_id)
    require(request, "pool.view", pool)
    return redirect(reverse("web:vm_list") + f"?pool={pool.pk}")


@login_required
@allowed("server.view")
@require_safe
def nav_tree(request: HttpRequest) -> HttpResponse:
    """The navigation tree alone, re-fetched when a server changes."""
    return render(request, "web/_nav_tree.html", {"nav": selectors.nav_tree(request.user)})


@login_required
@allowed("pool.create")
def pool_create(request: HttpRequest) -> HttpResponse:
    form = infra_forms.ServerPoolForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        ok, pool = ui.call_service(
            request, lambda: services("pools").server_pool_create(user=request.user, **form.cleaned_data), form=form
        )
        if ok:
            messages.success(request, _("Server pool %(name)s created.") % {"name": pool.name})
            return redirect(reverse("web:vm_list") + f"?pool={pool.pk}")
    return render_page(request, "web/servers/pool_create.html", {"form": form}, section="servers")


def require_discovery(request: HttpRequest, kwargs: dict) -> None:
    """A new host and port needs server.discover; the server already there, server.rediscover on it."""
    permissions.authorize_server_discover(
        request.user, hostname=kwargs["hostname"], ssh_port=kwargs["ssh_port"], rediscover=kwargs["rediscover"]
    )


@login_required
@allowed("server.discover", "server.rediscover")
def server_discover(request: HttpRequest) -> HttpResponse:
    form = infra_forms.ServerDiscoverForm(request.POST if request.method == "POST" else None)
    # Only the pools the user may view are offered (a pool Administrator rediscovers in their own).
    form.fields["server_pool"].queryset = permissions.scope(request.user, "pool.view", ServerPool.objects.all())
    if request.method == "POST" and form.is_valid():
        d = dict(form.cleaned_data)
        kwargs = {
            k: d[k]
            for k in (
                "hostname",
                "transport",
                "ssh_port",
                "ssh_user",
                "host_key_fingerprint",
                "server_pool",
                "rediscover",
            )
        }
        kwargs.update(
            password=d["password"] or None,
            private_key=d["private_key"] or None,
            name=d["name"] or None,
            ssh_port=d["ssh_port"] or 22,
            ssh_user=d["ssh_user"] or "root",
        )
        require_discovery(request, kwargs)
        ok, job = ui.call_service(
            request,
            lambda: services("servers").server_discover(user=request.user, **kwargs),
            form=form,
            field_map={"fingerprint": "host_key_fingerprint", "port": "ssh_port"},
        )
        if ok:
            messages.success(
                request, _("Discovery of %(host)s queued as job #%(job)s.") % {"host": d["hostname"], "job": job.pk}
            )
            return redirect("web:server_list")
    return render_page(
        request, "web/servers/discover.html", {"form": form, "perspective": "servers"}, section="servers"
    )


@login_required
@allowed("server.scan_host_key", "server.rediscover")
@require_POST
def server_scan_host_key(request: HttpRequest) -> HttpResponse:
    """Fetch the host key a server offers (no login, nothing trusted): a fragment of the
    Discover Server form showing its fingerprint for the administrator to compare."""
    form = infra_forms.HostKeyScanForm(request.POST)
    context: dict = {"form": form}
    if form.is_valid():
        d = form.cleaned_data
        ok, offered = ui.call_service(
            request,
            lambda: services("servers").server_scan_host_key(hostname=d["hostname"], port=d["ssh_port"] or 22),
            form=form,
            field_map={"port": "ssh_port"},
        )
        context["offered"] = offered if ok else None
    return render(request, "web/servers/_host_key.html", context)


@login_required
@allowed("server.lock")
@require_POST
def server_inbound_lock(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server, pk=server_id)
    require(request, "server.lock", server)
    locked = request.POST.get("locked") == "1"
    ui.call_service(
        request,
        lambda: services("servers").server_set_inbound_lock(server=server, user=request.user, locked=locked),
        success=_("Inbound migration lock of %(s)s is now %(state)s.")
        % {"s": server.name, "state": _("on") if locked else _("off")},
    )
    return redirect("web:server_detail", server_id=server.pk)


@login_required
@allowed("server.delete")
@require_POST
def server_delete(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server, pk=server_id)
    require(request, "server.delete", server)
    ok, job = ui.call_service(request, lambda: services("servers").server_delete(server=server, user=request.user))
    if ok:
        messages.success(
            request, _("Deletion of server %(s)s queued as job #%(job)s.") % {"s": server.name, "job": job.pk}
        )
        return redirect("web:server_list")
    return redirect("web:server_detail", server_id=server.pk)


@login_required
@allowed("repository.view")
def repository_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        require(request, "repository.create")
    form = storage_forms.RepositoryCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        ok, job = ui.call_service(
            request,
            lambda: services("repositories").repository_create(
                user=request.user,
                name=d["name"],
                kind=d["kind"],
                path=d["path"],
                server=d["server"],
                backend=d["backend"],
                nfs_server=d["nfs_server"],
                nfs_export=d["nfs_export"],
                server_pools=list(d["server_pools"]),
            ),
            form=form,
        )
        if ok:
            messages.success(
                request, _("Repository %(name)s: job #%(job)s queued.") % {"name": d["name"], "job": job.pk}
            )
            return redirect("web:repository_list")
    return render_page(
        request,
        "web/repositories/list.html",
        {"repositories": selectors.repository_list(), "form": form},
        section="repositories",
    )


@login_required
@allowed("repository.view")
@require_safe
def repository_detail(request: HttpRequest, repo_id: int) -> HttpResponse:
    repo = get_object_or_404(Repository.objects.select_related("server").prefetch_related("server_pools"), pk=repo_id)
    require(request, "repository.view", repo)
    user = request.user
    # What is in the repository, each kind only for those who may see it.
    vms = list(permissions.scope(user, "vm.view", selectors.vms_of_repository(repo)))
    context = {
        "repo": repo,
        "isos": permissions.scope(user, "iso.view", repo.iso_files.all()),
        "disks": permissions.scope(user, "disk.view", repo.virtual_disks.prefetch_related("slots__vm")),
        "templates": [vm for vm in vms if vm.status == VmStatus.TEMPLATE],
        "vm_files": [vm for vm in vms if vm.status != VmStatus.TEMPLATE],
        "appliances": permissions.scope(user, "appliance.view", repo.appliances.prefetch_related("vms__disks")),
        "upload_form": storage_forms.IsoUploadForm(),
        "import_form": storage_forms.IsoImportForm(),
        "appliance_form": storage_forms.ApplianceImportForm(),
        "disk_form": storage_forms.DiskCreateForm(),
        "tab": request.GET.get("tab", "isos"),
    }
    return render_page(request, "web/repositories/detail.html", context, section="repositories")


@login_required
@allowed("repository.refresh")
@require_POST
def repository_refresh(request: HttpRequest, repo_id: int) -> HttpResponse:
    repo = get_object_or_404(Repository, pk=repo_id)
    require(request, "repository.refresh", repo)
    ui.call_service(
        request,
        lambda: services("repositories").repository_refresh(repository=repo, user=request.user),
        success=_("Refresh of %(r)s queued.") % {"r": repo.name},
    )
    return redirect("web:repository_detail", repo_id=repo.pk)


@login_required
@allowed("iso.create")
@require_POST
def iso_upload(request: HttpRequest, repo_id: int) -> HttpResponse:
    """Multipart upload (the page sends it with XHR to show progress); answers JSON for XHR."""
    repo = get_object_or_404(Repository, pk=repo_id)
    require(request, "iso.create", repo)
    form = storage_forms.IsoUploadForm(request.POST, request.FILES)
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    if form.is_valid():
        upload = form.cleaned_data["file"]
        name = form.cleaned_data["name"] or os.path.basename(upload.name)
        ok, job = ui.call_service(
            request,
            lambda: services("storage").iso_upload(
                repository=repo, user=request.user, name=name, fileobj=upload, size=upload.size
            ),
            form=form,
            field_map={"fileobj": "file", "size": "file"},
        )
        if ok:
            msg = _("Upload of %(name)s received; job #%(job)s imports it.") % {"name": name, "job": job.pk}
            if wants_json:
                return JsonResponse({"ok": True, "job": job.pk, "message": msg})
            messages.success(request, msg)
            return redirect("web:repository_detail", repo_id=repo.pk)
    errors = {k: [str(e) for e in v] for k, v in form.errors.items()}
    if wants_json:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    for _field, errs in errors.items():
        for e in errs:
            messages.error(request, e)
    return redirect("web:repository_detail", repo_id=repo.pk)


@login_required
@allowed("appliance.create")
@require_POST
def appliance_import(request: HttpRequest, repo_id: int) -> HttpResponse:
    """Import a virtual appliance (OVA upload, sent with XHR for progress, or a URL) into the
    repository's Assemblies/; answers JSON for XHR."""
    repo = get_object_or_404(Repository, pk=repo_id)
    require(request, "appliance.create", repo)
    form = storage_forms.ApplianceImportForm(request.POST, request.FILES)
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    if form.is_valid():
        d = form.cleaned_data
        upload = d["file"]
        ok, job = ui.call_service(
            request,
            lambda: services("appliances").appliance_import(
                user=request.user,
                repository=repo,
                name=d["name"],
                url=d["url"] or "",
                fileobj=upload,
                filename=upload.name if upload else "",
            ),
            form=form,
            field_map={"fileobj": "file", "filename": "file"},
        )
        if ok:
            msg = _("Appliance import queued as job #%(job)s.") % {"job": job.pk}
            if wants_json:
                return JsonResponse({"ok": True, "job": job.pk, "message": msg})
            messages.success(request, msg)
            return redirect(reverse("web:repository_detail", args=[repo.pk]) + "?tab=appliances")
    errors = {k: [str(e) for e in v] for k, v in form.errors.items()}
    if wants_json:
        return JsonResponse({"ok": False, "errors": errors}, status=400)
    for errs in errors.values():
        for e in errs:
            messages.error(request, e)
    return redirect(reverse("web:repository_detail", args=[repo.pk]) + "?tab=appliances")


@login_required
@allowed("appliance.delete")
@require_POST
def appliance_delete(request: HttpRequest, appliance_id: int) -> HttpResponse:
    appliance = get_object_or_404(VirtualAppliance, pk=appliance_id)
    require(request, "appliance.delete", appliance)
    ok, job = ui.call_service(
        request, lambda: services("appliances").appliance_delete(appliance=appliance, user=request.user)
    )
    if ok:
        messages.success(
            request,
            _("Deletion of virtual appliance %(name)s queued as job #%(job)s.")
            % {"name": appliance.name, "job": job.pk},
        )
    return redirect(reverse("web:repository_detail", args=[appliance.repository_id]) + "?tab=appliances")


@login_required
@allowed("disk.resize")
@require_POST
def disk_flatten(request: HttpRequest, disk_id: int) -> HttpResponse:
    """Make a thin clone standalone (its base is deleted with its last child)."""
    disk = get_object_or_404(VirtualDisk, pk=disk_id)
    require(request, "disk.resize", disk)
    ok, job = ui.call_service(request, lambda: services("disk_copies").disk_flatten(disk=disk, user=request.user))
    if ok:
        messages.success(
            request, _("Flattening of disk %(name)s queued as job #%(job)s.") % {"name": disk.name, "job": job.pk}
        )
    return redirect(reverse("web:repository_detail", args=[disk.repository_id]) + "?tab=disks")


@login_required
@allowed("iso.create")
@require_POST
def iso_import(request: HttpRequest, repo_id: int) -> HttpResponse:
    repo = get_object_or_404(Repository, pk=repo_id)
    require(request, "iso.create", repo)
    form = storage_forms.IsoImportForm(request.POST)
    if form.is_valid():
        ui.call_service(
            request,
            lambda: services("storage").iso_import(repository=repo, user=request.user, url=form.cleaned_data["url"]),
            success=_("Import queued."),
        )
    else:
        messages.error(request, _("Enter a valid URL."))
    return redirect("web:repository_detail", repo_id=repo.pk)


@login_required
@allowed("disk.create")
def disk_create(request: HttpRequest, repo_id: int) -> HttpResponse:
    repo = get_object_or_404(Repository, pk=repo_id)
    require(request, "disk.create", repo)
    form = storage_forms.DiskCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        ok, job = ui.call_service(
            request,
            lambda: services("storage").disk_create(
                user=request.user,
                repository=repo,
                name=d["name"],
                size_bytes=int(d["size_gib"] * storage_forms.GIB),
                sparse=d["sparse"],
                shareable=d["shareable"],
            ),
            form=form,
            field_map={"size_bytes": "size_gib"},
        )
        if ok:
            messages.success(
                request, _("Creation of disk %(n)s queued as job #%(job)s.") % {"n": d["name"], "job": job.pk}
            )
            return redirect(reverse("web:repository_detail", args=[repo.pk]) + "?tab=disks")
    return render_page(
        request, "web/repositories/disk_create.html", {"repo": repo, "form": form}, section="repositories"
    )


@login_required
@allowed("network.view")
def network_list(request: HttpRequest) -> HttpResponse:
    if request.method == "POST" and not any(
        permissions.can(request.user, action) for action in ("network.create", "mac_range.change")
    ):
        raise PermissionDenied
    mac = MacAddressRange.objects.filter(pk=1).first() if permissions.can(request.user, "mac_range.view") else None
    net_form = infra_forms.NetworkCreateForm(request.POST if request.POST.get("form") == "network" else None)
    mac_form = infra_forms.MacRangeForm(
        request.POST if request.POST.get("form") == "mac" else None,
        initial={"start": mac.start, "end": mac.end}
        if mac
        else {"start": "00:21:f6:00:00:00", "end": "00:21:f6:ff:ff:ff"},
    )
    if net_form.is_bound:
        require(request, "network.create")
    if mac_form.is_bound:
        require(request, "mac_range.change")
    if request.method == "POST" and net_form.is_bound and net_form.is_valid():
        d = net_form.cleaned_data
        ok, _net = ui.call_service(
            request,
            lambda: services("networks").network_create(
                user=request.user,
                name=d["name"],
                bridge=d["bridge"],
                libvirt_network=d["libvirt_network"],
                vlan_id=d["vlan_id"],
                roles=d["roles"],
                server_pools=list(d["server_pools"]),
            ),
            form=net_form,
            success=_("Network %(n)s created.") % {"n": d["name"]},
        )
        if ok:
            return redirect("web:network_list")
    if request.method == "POST" and mac_form.is_bound and mac_form.is_valid():
        d = mac_form.cleaned_data
        ok, _rng = ui.call_service(
            request,
            lambda: services("vnics").mac_range_set(start=d["start"], end=d["end"]),
            form=mac_form,
            success=_("MAC address range saved."),
        )
        if ok:
            return redirect("web:network_list")
    return render_page(
        request,
        "web/networks/list.html",
        {"networks": selectors.network_list(), "net_form": net_form, "mac_form": mac_form, "mac": mac},
        section="networking",
    )


@login_required
@allowed("network.delete")
@require_POST
def network_delete(request: HttpRequest, network_id: int) -> HttpResponse:
    from ovmweb.inventory.models import Network

    net = get_object_or_404(Network, pk=network_id)
    require(request, "network.delete", net)
    ui.call_service(
        request,
        lambda: services("networks").network_delete(network=net, user=request.user),
        success=_("Network %(n)s deleted.") % {"n": net.name},
    )
    return redirect("web:network_list")
