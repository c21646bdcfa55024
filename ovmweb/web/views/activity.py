"""Jobs and events: the live jobs panel, job pages with abort and log, events per object."""

from __future__ import annotations

import importlib

from django.contrib.auth.decorators import login_required
from django.contrib.contenttypes.models import ContentType
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST, require_safe

from ovmweb.inventory import permissions
from ovmweb.jobs.choices import JobStatus, Severity
from ovmweb.jobs.models import Event, Job

from .. import paging, selectors, ui
from .common import allowed, render_page, require
from .vms import safe_next


def job_services():
    return importlib.import_module("ovmweb.jobs.services")


@login_required
@allowed("job.view")
@require_safe
def job_panel(request: HttpRequest) -> HttpResponse:
    return render(request, "web/jobs/_panel.html", {"panel_jobs": selectors.job_panel(user=request.user)})


@login_required
@allowed("job.view")
@require_safe
def job_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or ""
    if status not in JobStatus.values:
        status = ""
    jobs = selectors.job_list(user=request.user, status=status or None)
    # Keyset by default (the last page costs what the first does); ?page=N by offset.
    page = paging.cursor_page(request, jobs, 50) or Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render_page(
        request,
        "web/jobs/list.html",
        {
            "page": page,
            "cursor_paging": isinstance(page, paging.CursorPage),
            "status": status,
            "statuses": JobStatus.choices,
            "perspective": "jobs",
        },
        partial="web/jobs/_table.html",
        section="servers",
    )


@login_required
@allowed("job.view")
@require_safe
def job_detail(request: HttpRequest, job_id: int) -> HttpResponse:
    try:
        # Only jobs the user may see (of objects the user may see): any other is "no such job".
        job = selectors.job_detail(user=request.user, job_id=job_id)
    except Job.DoesNotExist:
        raise Http404 from None
    return render_page(
        request,
        "web/jobs/detail.html",
        {"job": job, "perspective": "jobs"},
        partial="web/jobs/_detail.html",
        section="servers",
    )


@login_required
@allowed("job.abort")
@require_POST
def job_abort(request: HttpRequest, job_id: int) -> HttpResponse:
    job = get_object_or_404(permissions.scope(request.user, "job.view", Job.objects.all()), pk=job_id)
    # Its owner, or a user who may change jobs.
    require(request, "job.abort", job)
    ui.call_service(
        request,
        lambda: job_services().job_request_abort(job=job, user=request.user),
        success=_("Abort of job #%(id)s requested.") % {"id": job.pk},
    )
    return redirect(safe_next(request, job_detail_url(job)))


def job_detail_url(job: Job) -> str:
    from django.urls import reverse

    return reverse("web:job_detail", args=[job.pk])


@login_required
@allowed("event.view")
@require_safe
def event_list(request: HttpRequest) -> HttpResponse:
    obj = None
    model_name, object_id = request.GET.get("type"), request.GET.get("id")
    if model_name and object_id and object_id.isdigit():
        ct = ContentType.objects.filter(app_label="inventory", model=model_name).first()
        if ct is None:
            raise Http404
        obj = (
            ct.get_object_for_this_type(pk=int(object_id))
            if ct.model_class().objects.filter(pk=int(object_id)).exists()
            else None
        )
        if obj is None:
            raise Http404
        view_action = permissions.view_action_for(type(obj))
        if view_action is None or not permissions.can(request.user, view_action, obj):
            raise Http404  # the page would name an object the user may not see
    severity = request.GET.get("severity") or ""
    if severity not in Severity.values:
        severity = ""
    unack = request.GET.get("unack") == "1"
    qs = selectors.event_list(user=request.user, obj=obj, severity=severity or None, unacknowledged=unack)
    page = Paginator(qs, 50).get_page(request.GET.get("page"))
    return render_page(
        request,
        "web/events/list.html",
        {
            "page": page,
            "obj": obj,
            "severity": severity,
            "severities": Severity.choices,
            "unack": unack,
            "perspective": "events",
            "type": model_name or "",
            "id": object_id or "",
        },
        partial="web/events/_table.html",
        section="servers",
    )


@login_required
@allowed("event.acknowledge")
@require_POST
def event_acknowledge(request: HttpRequest, event_id: int) -> HttpResponse:
    event = get_object_or_404(permissions.scope(request.user, "event.view", Event.objects.all()), pk=event_id)
    require(request, "event.acknowledge", event)
    if not event.acknowledged:
        ui.call_service(request, lambda: job_services().event_acknowledge(event=event, user=request.user))
    return redirect(safe_next(request, "/events/"))
