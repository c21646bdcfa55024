"""The admin asks ``ovmweb.inventory.permissions`` too: its ``has_*_permission`` and its
change lists go through ``can`` and ``scope``, never through a model permission of their own."""

from __future__ import annotations

from django.contrib import admin

from . import permissions


class AuthorizedAdmin(admin.ModelAdmin):
    """``permission_noun`` names the actions of the model ("vm" -> "vm.view", "vm.create"...);
    ``permission_verbs`` maps the admin's verbs to theirs, and a verb left out is refused.
    A subclass that refuses more (a model only jobs write) overrides the method itself."""

    permission_noun: str = ""
    permission_verbs: dict[str, str] = {"view": "view", "add": "create", "change": "change", "delete": "delete"}

    def _allowed(self, request, verb: str, obj=None) -> bool:
        action = self.permission_verbs.get(verb)
        return action is not None and permissions.can(request.user, f"{self.permission_noun}.{action}", obj)

    def has_view_permission(self, request, obj=None):
        # As Django's own: whoever may change a row may look at it.
        return self._allowed(request, "view", obj) or self._allowed(request, "change", obj)

    def has_add_permission(self, request, *args):
        return self._allowed(request, "add")

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, "change", obj)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, "delete", obj)

    def get_queryset(self, request):
        """Only the rows the user may see (jobs and events: of objects the user may see)."""
        queryset = super().get_queryset(request)
        for verb in ("view", "change"):
            action = self.permission_verbs.get(verb)
            if action is not None and permissions.can(request.user, f"{self.permission_noun}.{action}"):
                return permissions.scope(request.user, f"{self.permission_noun}.{action}", queryset)
        return queryset.none()


class ReadOnlyAuthorizedAdmin(AuthorizedAdmin):
    """Rows written only by services and jobs: visible to those who may view them, never edited by hand."""

    permission_verbs = {"view": "view"}


def authorized(request, action: str, fn):
    """``fn(obj)`` for an admin action, once the user may do ``action`` to that very ``obj``
    (``run_service_action`` reports a refusal per row)."""

    def run(obj):
        permissions.authorize(request.user, action, obj)
        return fn(obj)

    return run
