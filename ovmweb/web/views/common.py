"""What every management page shares: the navigation tree, the jobs panel, and
the partial-vs-full rendering switch for htmx requests."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .. import selectors


def render_page(request: HttpRequest, template: str, context: dict, *, partial: str | None = None,
                section: str = "") -> HttpResponse:
    """Render ``template`` as a full page, or only ``partial`` when htmx asks for a fragment."""
    if partial and getattr(request, "htmx", False) and not request.htmx.boosted:
        return render(request, partial, context)
    context = {
        **context,
        "nav": selectors.nav_tree(),
        "panel_jobs": selectors.job_panel(user=request.user),
        "section": section,
    }
    return render(request, template, context)


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
