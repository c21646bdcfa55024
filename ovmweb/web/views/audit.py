"""The audit trail page: who signed in, changed roles, ran jobs, opened consoles; filtered
by user, action, object and time range, paginated. Read only."""

from __future__ import annotations

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_safe

from ovmweb.audit import selectors
from ovmweb.audit.models import AuditAction
from ovmweb.inventory import permissions

from .common import allowed, render_page

PAGE_SIZE = 50


class AuditFilterForm(forms.Form):
    user = forms.CharField(required=False, max_length=150, label=_("User"))
    action = forms.ChoiceField(required=False, choices=[("", _("All")), *AuditAction.choices], label=_("Action"))
    object = forms.CharField(required=False, max_length=255, label=_("Object"))
    object_type = forms.CharField(required=False, max_length=100, widget=forms.HiddenInput)
    object_id = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)
    since = forms.DateTimeField(required=False, label=_("From"))
    until = forms.DateTimeField(required=False, label=_("Until"))


@login_required
@allowed("audit.view")
@require_safe
def audit_list(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET)
    # A filter that does not parse is left out (the form shows its error); the others apply.
    form.is_valid()
    f = form.cleaned_data
    records = selectors.audit_list(
        user=f.get("user", ""),
        action=f.get("action", ""),
        object_type=f.get("object_type", ""),
        object_id=f.get("object_id", ""),
        obj=f.get("object", ""),
        since=f.get("since"),
        until=f.get("until"),
    )
    records = permissions.scope(request.user, "audit.view", records)
    page = Paginator(records, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render_page(
        request,
        "web/audit/list.html",
        {"page": page, "form": form, "query": query.urlencode(), "perspective": "audit"},
        partial="web/audit/_table.html",
        section="audit",
    )
