"""API tokens in the admin: made there too, their key shown on the page that made them, once."""

from __future__ import annotations

from django.contrib import admin
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from ovmweb.core.admin import ServiceAdmin

from . import tokens
from .forms import ThrottledAdminAuthenticationForm
from .models import ApiToken

# The admin's own sign-in page says "too many attempts" too (the backend throttles it anyway).
admin.site.login_form = ThrottledAdminAuthenticationForm


@admin.register(ApiToken)
class ApiTokenAdmin(ServiceAdmin):
    list_display = ["prefix", "user", "name", "created", "last_used"]
    list_select_related = ["user"]
    search_fields = ["user__username", "name", "prefix"]
    fields = ["user", "name"]
    readonly_fields = ["prefix", "created", "last_used"]

    def get_fields(self, request, obj=None):
        return ["user", "name"] if obj is None else ["user", "name", "prefix", "created", "last_used"]

    def has_change_permission(self, request, obj=None):
        return False  # nothing to edit: revoke and make another

    def service_create(self, request, data: dict):
        token, key = tokens.create_token(user=data["user"], name=data.get("name", ""))
        token.new_key = key  # for response_add only; never stored
        return token

    def service_delete(self, request, obj) -> None:
        obj.delete()

    def response_add(self, request, obj, post_url_continue=None):
        # Rendered straight away, not put in a message: messages travel in a cookie or the session.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("API token created"),
            "token": obj,
            "key": obj.new_key,
        }
        return TemplateResponse(request, "admin/accounts/apitoken/created.html", context)
