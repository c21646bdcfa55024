"""HA, maintenance and pool policies in the pages: a server's maintenance button, and a
server pool's page (its servers with their disk leases and states, the HA warning, the
DRS and DPM settings)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from ovmweb.inventory import permissions
from ovmweb.inventory.models import Server, ServerPool
from ovmweb.jobs.models import Event

from .. import ui
from .common import allowed, render_page, require
from .vms import services


class PoolPoliciesForm(forms.ModelForm):
    class Meta:
        model = ServerPool
        fields = ["drs_enabled", "drs_threshold_percent", "drs_period_s", "dpm_enabled"]
        labels = {
            "drs_enabled": gettext_lazy("DRS: move VMs off busy servers"),
            "drs_threshold_percent": gettext_lazy("DRS threshold (% CPU load or memory)"),
            "drs_period_s": gettext_lazy("DRS period (seconds above the threshold)"),
            "dpm_enabled": gettext_lazy("DPM: report servers that could be emptied"),
        }


@login_required
@allowed("server.change")
@require_POST
def server_maintenance(request: HttpRequest, server_id: int) -> HttpResponse:
    server = get_object_or_404(Server, pk=server_id)
    require(request, "server.change", server)
    on = request.POST.get("on") == "1"
    ui.call_service(
        request,
        lambda: services("maintenance").server_set_maintenance(server=server, user=request.user, on=on),
        success=(
            _("%(s)s is in maintenance: its running VMs are being migrated away.")
            if on
            else _("%(s)s left maintenance.")
        )
        % {"s": server.name},
    )
    return redirect("web:server_detail", server_id=server.pk)


@login_required
@allowed("pool.view")
def pool_policies(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = get_object_or_404(permissions.scope(request.user, "pool.view", ServerPool.objects.all()), pk=pool_id)
    may_change = permissions.can(request.user, "pool.change", pool)
    form = PoolPoliciesForm(request.POST if request.method == "POST" else None, instance=pool)
    if request.method == "POST":
        require(request, "pool.change", pool)
        if form.is_valid():
            ok, _result = ui.call_service(
                request,
                lambda: services("pools").server_pool_set_policies(pool=pool, user=request.user, **form.cleaned_data),
                form=form,
                success=_("Policies of %(p)s saved.") % {"p": pool.name},
            )
            if ok:
                return redirect("web:pool_policies", pool_id=pool.pk)
    pool.refresh_from_db()
    context = {
        "pool": pool,
        "form": form if may_change else None,
        "servers": pool.servers.order_by("name"),
        "ha_warning": services("pools").ha_refusal(pool),
        "events": Event.objects.filter(type__in=["pool.drs", "pool.dpm", "pool.policies"], object_id=pool.pk).order_by(
            "-id"
        )[:10],
    }
    return render_page(request, "web/servers/pool_policies.html", context, section="servers")


__all__ = ["PoolPoliciesForm", "pool_policies", "server_maintenance"]
