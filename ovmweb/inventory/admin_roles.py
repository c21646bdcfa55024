"""Role assignments in the admin: the place for estate-wide roles (a pool's own roles are also
on its page and in the API). Made and removed through ``services.roles``, never edited; the
admin's model permissions on role assignments decide who may (superusers, or users given them)."""

from __future__ import annotations

from django.contrib import admin

from ovmweb.accounts.models import RoleAssignment
from ovmweb.core.admin import ServiceAdmin

from .services import roles as role_services


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(ServiceAdmin):
    list_display = ["role", "user", "group", "server_pool", "granted_by", "created_at"]
    list_filter = ["role", "server_pool"]
    list_select_related = ["user", "group", "server_pool", "granted_by"]
    search_fields = ["user__username", "group__name", "server_pool__name"]
    fields = ["role", "user", "group", "server_pool"]

    def has_change_permission(self, request, obj=None):
        return False  # a change of role is a removal and a grant, each recorded

    def service_create(self, request, data: dict):
        return role_services.role_grant(
            user=request.user,
            pool=data.get("server_pool"),
            role=data["role"],
            grantee_user=data.get("user"),
            grantee_group=data.get("group"),
        )

    def service_delete(self, request, obj) -> None:
        role_services.role_revoke(user=request.user, assignment=obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.service_delete(request, obj)
