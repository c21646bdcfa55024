"""Jobs, locks and events are written by services only; the admin reads them and
offers the two things a user does to them: abort a job, acknowledge an event."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ovmweb.core.admin import ReadOnlyAdmin, run_service_action

from . import services
from .models import Event, Job, ObjectLock


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "summary",
        "operation",
        "status",
        "progress",
        "user",
        "target_name",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "operation"]
    search_fields = ["summary", "target_name", "operation"]
    list_select_related = ["user"]
    # Parameters may hold what a user typed (a discovery password); they stay out of the page.
    exclude = ["params"]
    actions = ["abort_jobs"]

    def has_abort_permission(self, request):
        return request.user.has_perm("jobs.change_job")

    @admin.action(description=_("Abort selected jobs"), permissions=["abort"])
    def abort_jobs(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            lambda job: services.job_request_abort(job=job, user=request.user),
            _("abort requests recorded"),
        )


@admin.register(ObjectLock)
class ObjectLockAdmin(ReadOnlyAdmin):
    list_display = ["content_type", "object_id", "job", "created_at"]


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "severity", "type", "object_repr", "text", "acknowledged", "user"]
    list_filter = ["severity", "acknowledged", "type"]
    search_fields = ["text", "object_repr", "type"]
    list_select_related = ["user"]
    actions = ["acknowledge_events"]

    def has_acknowledge_permission(self, request):
        return request.user.has_perm("jobs.change_event")

    @admin.action(description=_("Acknowledge selected events"), permissions=["acknowledge"])
    def acknowledge_events(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            lambda e: services.event_acknowledge(event=e, user=request.user),
            _("events acknowledged"),
        )
