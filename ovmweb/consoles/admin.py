"""Console tickets, read-only. The token hash is never displayed: it is the
only thing an attacker with database read access would need to guess against."""

from __future__ import annotations

from django.contrib import admin

from ovmweb.inventory.admin_access import ReadOnlyAuthorizedAdmin

from .models import ConsoleTicket


@admin.register(ConsoleTicket)
class ConsoleTicketAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "console_ticket"
    list_display = ["id", "vm", "kind", "user", "read_only", "created_at", "expires_at", "used_at"]
    list_filter = ["kind", "read_only"]
    search_fields = ["vm__name", "user__username"]
    list_select_related = ["vm", "user"]
    exclude = ["token_hash"]
