"""Jobs, locks and events in the admin. They are written by services only; the admin reads
them and offers the two things a user does to them: abort a job, acknowledge an event.

Registered here rather than in ``ovmweb.jobs``: who may see a job or an event follows the
inventory object it is about (``ovmweb.inventory.permissions``), and jobs sit below inventory."""

from __future__ import annotations

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from ovmweb.core.admin import run_service_action
from ovmweb.jobs import services
from ovmweb.jobs.models import Event, Job, ObjectLock

from . import permissions
from .admin_access import ReadOnlyAuthorizedAdmin, authorized


@admin.register(Job)
class JobAdmin(ReadOnlyAuthorizedAdmin):
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
    permission_noun = "job"

    def has_abort_permission(self, request):
        return permissions.can(request.user, "job.abort")

    @admin.action(description=_("Abort selected jobs"), permissions=["abort"])
    def abort_jobs(self, request, queryset):
        # Each job: its owner, or a user who may change jobs.
        run_service_action(
            self,
            request,
            queryset,
            authorized(request, "job.abort", lambda job: services.job_request_abort(job=job, user=request.user)),
            _("abort requests recorded"),
        )


@admin.register(ObjectLock)
class ObjectLockAdmin(ReadOnlyAuthorizedAdmin):
    list_display = ["content_type", "object_id", "job", "created_at"]
    permission_noun = "lock"


@admin.register(Event)
class EventAdmin(ReadOnlyAuthorizedAdmin):
    list_display = ["created_at", "severity", "type", "object_repr", "text", "acknowledged", "user"]
    list_filter = ["severity", "acknowledged", "type"]
    search_fields = ["text", "object_repr", "type"]
    list_select_related = ["user"]
    actions = ["acknowledge_events"]
    permission_noun = "event"

    def has_acknowledge_permission(self, request):
        return permissions.can(request.user, "event.acknowledge")

    @admin.action(description=_("Acknowledge selected events"), permissions=["acknowledge"])
    def acknowledge_events(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            authorized(request, "event.acknowledge", lambda e: services.event_acknowledge(event=e, user=request.user)),
            _("events acknowledged"),
        )
