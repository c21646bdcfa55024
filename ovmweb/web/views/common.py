"""What every management page shares: the navigation tree, the jobs panel, and
the partial-vs-full rendering switch for htmx requests."""

from __future__ import annotations

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ovmweb.inventory import permissions

from .. import selectors


def render_page(
    request: HttpRequest, template: str, context: dict, *, partial: str | None = None, section: str = ""
) -> HttpResponse:
    """Render ``template`` as a full page, or only ``partial`` when htmx asks for a fragment."""
    if partial and getattr(request, "htmx", False) and not request.htmx.boosted:
        return render(request, partial, context)
    context = {
        **context,
        # The tree names servers and pools: only for those who may see them.
        "nav": selectors.nav_tree(request.user) if permissions.can(request.user, "server.view") else {},
        "panel_jobs": selectors.job_panel(user=request.user),
        "section": section,
    }
    return render(request, template, context)


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def allowed(*actions: str):
    """A page for users who may do any of ``actions`` (``ovmweb.inventory.permissions``) to some
    object of their kind: 403 otherwise. The page then asks again about its object (``require``)."""

    def decorate(view):
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs):
            if not any(permissions.can(request.user, action) for action in actions):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def require(request: HttpRequest, action: str, obj=None) -> None:
    """PermissionDenied (403) unless the user may do ``action`` (to ``obj``). Called before
    ``ui.call_service``, which would turn a refusal into a message on a redirect."""
    permissions.authorize(request.user, action, obj)
