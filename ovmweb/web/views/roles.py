"""The roles page of a server pool: who holds which role there; its Administrators grant and remove."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.inventory import permissions
from ovmweb.inventory.models import ServerPool

from .. import ui
from .common import allowed, render_page, require
from .vms import services


class RoleGrantForm(forms.Form):
    role = forms.ChoiceField(label=gettext_lazy("Role"), choices=Role.choices)
    user = forms.ModelChoiceField(
        label=gettext_lazy("User"), queryset=get_user_model().objects.order_by("username"), required=False
    )
    group = forms.ModelChoiceField(label=gettext_lazy("Group"), queryset=Group.objects.order_by("name"), required=False)

    def clean(self):
        data = super().clean()
        if (data.get("user") is None) == (data.get("group") is None):
            raise forms.ValidationError(_("Name one user or one group."))
        return data


def _pool(request: HttpRequest, pool_id: int) -> ServerPool:
    # Looked up among the pools the user may view: another pool is a 404.
    return get_object_or_404(permissions.scope(request.user, "pool.view", ServerPool.objects.all()), pk=pool_id)


@login_required
@allowed("pool.view")
def pool_roles(request: HttpRequest, pool_id: int) -> HttpResponse:
    pool = _pool(request, pool_id)
    may_manage = permissions.can(request.user, "pool.roles", pool)
    form = RoleGrantForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        require(request, "pool.roles", pool)
        if form.is_valid():
            ok, _row = ui.call_service(
                request,
                lambda: services("roles").role_grant(
                    user=request.user,
                    pool=pool,
                    role=form.cleaned_data["role"],
                    grantee_user=form.cleaned_data["user"],
                    grantee_group=form.cleaned_data["group"],
                ),
                form=form,
            )
            if ok:
                messages.success(request, _("Role granted."))
                return redirect("web:pool_roles", pool_id=pool.pk)
    rows = RoleAssignment.objects.filter(server_pool=pool).select_related("user", "group", "granted_by")
    return render_page(
        request,
        "web/servers/pool_roles.html",
        {"pool": pool, "assignments": rows, "form": form if may_manage else None, "may_manage": may_manage},
        section="servers",
    )


@login_required
@allowed("pool.roles")
@require_POST
def pool_role_remove(request: HttpRequest, pool_id: int, role_id: int) -> HttpResponse:
    pool = _pool(request, pool_id)
    require(request, "pool.roles", pool)
    row = get_object_or_404(RoleAssignment, pk=role_id, server_pool=pool)
    if ui.call_service(request, lambda: services("roles").role_revoke(user=request.user, assignment=row))[0]:
        messages.success(request, _("Role removed."))
    return redirect("web:pool_roles", pool_id=pool.pk)
