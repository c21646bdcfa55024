"""What every management page shares: the navigation tree, the jobs panel, and
the partial-vs-full rendering switch for htmx requests."""

from __future__ import annotations

from django.contrib.auth.decorators import permission_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

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
        "nav": selectors.nav_tree() if request.user.has_perm("inventory.view_server") else {},
        "panel_jobs": selectors.job_panel(user=request.user),
        "section": section,
    }
    return render(request, template, context)


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def needs(*perms: str):
    """A page for users holding ``perms`` (model permissions; superusers hold all): 403 otherwise."""
    return permission_required(perms, raise_exception=True)


def require_perm(request: HttpRequest, perm: str) -> None:
    """The write half of a page that also reads (a list with its create form)."""
    if not request.user.has_perm(perm):
        raise PermissionDenied
