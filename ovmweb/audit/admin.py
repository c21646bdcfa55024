"""The audit trail in the admin: read-only for everyone, superusers included."""

from django.contrib import admin

from .models import AuditRecord


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    list_display = ("created_at", "action", "username", "address", "object_type", "object_repr", "outcome")
    list_filter = ("action", "created_at")
    search_fields = ("username", "object_repr", "address")
    date_hierarchy = "created_at"
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
