"""Pieces shared by the viewsets of the REST API: permissions, the input
check (``validated``), the 202 job response, and the viewset base classes."""

from __future__ import annotations

from importlib import import_module

from django.contrib.contenttypes.models import ContentType
from django.db.models import Max
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.response import Response

from ovmweb.inventory.permissions import can, scope
from ovmweb.jobs.models import Job

from .. import serializers as s
from ..mixins import StrictSerializer
from ..pagination import Pagination
from ..schema import StrictAutoSchema


def service(name: str):
    """The service module ``ovmweb.inventory.services.<name>``.

    Imported when a request needs it: the service modules import the job
    runner and the hypervisor layer, which the URL configuration (loaded by
    every page) has no reason to pull in.
    """
    return import_module(f"ovmweb.inventory.services.{name}")


# DRF's viewset actions -> the verb of ``ovmweb.inventory.permissions`` they are.
DEFAULT_VERBS = {
    "list": "view",
    "retrieve": "view",
    "metadata": "view",
    "create": "create",
    "update": "change",
    "partial_update": "change",
    "destroy": "delete",
}


def permission_action(request, view) -> str | tuple[str, ...] | None:
    """The action of ``ovmweb.inventory.permissions`` this request is.

    A viewset names its noun (``permission_noun = "vm"``): ``list`` is ``vm.view``,
    ``destroy`` ``vm.delete``, an ``@action`` ``start`` is ``vm.start``; its
    ``permission_actions`` maps an action (or, for a plain APIView, an HTTP method)
    to another name. A method the view does not route is asked as a read: DRF then
    answers 405 to who may see these objects, and 403 to anyone else."""
    explicit = getattr(view, "permission_actions", {})
    if hasattr(view, "action"):
        if view.action is None:
            return f"{view.permission_noun}.view"
        if view.action in explicit:
            return explicit[view.action]
        return f"{view.permission_noun}.{DEFAULT_VERBS.get(view.action, view.action)}"
    return explicit.get(request.method) or explicit.get("GET")


class ActionPermission(permissions.BasePermission):
    """Every request asks ``ovmweb.inventory.permissions``: the kind of action first (no
    object: may the user do it at all?), then, for detail routes, the object itself.
    An action missing from the permissions table is an error, not an open door."""

    def has_permission(self, request, view):
        action = permission_action(request, view)
        if action is None:
            return True
        # A tuple: any of these (the view decides which one applies once it has read the input).
        return any(can(request.user, a) for a in (action if isinstance(action, tuple) else (action,)))

    def has_object_permission(self, request, view, obj):
        action = permission_action(request, view)
        return isinstance(action, str) and can(request.user, action, obj)


RESPONSES_JOB = {
    202: OpenApiResponse(s.JobSerializer, description=_("The job that was queued.")),
    400: OpenApiResponse(description=_("Bad input: field errors.")),
    409: OpenApiResponse(s.ErrorDetailSerializer, description=_("The object's current state forbids it.")),
}
RESPONSES_409 = {409: OpenApiResponse(s.ErrorDetailSerializer, description=_("Conflict with the current state."))}


def validated(serializer_class, request, *, partial: bool = False, instance=None) -> dict:
    serializer = serializer_class(instance=instance, data=request.data, partial=partial, context={"request": request})
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def job_response(job: Job) -> Response:
    return Response(s.JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


def last_job_id() -> int:
    return Job.objects.aggregate(last=Max("pk"))["last"] or 0


def job_queued_since(*, after: int, target, operation: str) -> Job | None:
    """The job a service queued on ``target`` (it returned the object it made, not the job)."""
    return (
        Job.objects.filter(
            pk__gt=after,
            operation=operation,
            target_type=ContentType.objects.get_for_model(target),
            target_id=target.pk,
        )
        .order_by("-pk")
        .first()
    )


def monitor_link(job: Job | None) -> dict:
    """A ``Link: <job>; rel="monitor"`` header (RFC 5989) naming a job that follows a 201."""
    return {"Link": f'</api/v1/jobs/{job.pk}/>; rel="monitor"'} if job is not None else {}


MONITOR_HEADER = OpenApiParameter(
    "Link",
    OpenApiTypes.STR,
    location=OpenApiParameter.HEADER,
    response=[201],
    description=_(
        'When a job goes on with the work (copying disks, hot-plugging): </api/v1/jobs/{id}/>; rel="monitor".'
    ),
)


class ApiViewSet(viewsets.GenericViewSet):
    schema = StrictAutoSchema()
    pagination_class = Pagination
    permission_classes = [permissions.IsAuthenticated, ActionPermission]
    lookup_value_regex = r"[0-9]+"
    # The noun of the actions in ovmweb.inventory.permissions ("vm" -> "vm.view", "vm.start"...).
    permission_noun: str = ""
    permission_actions: dict[str, str] = {}

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            # Only the rows the user may see (jobs and events: of objects the user may see).
            return scope(self.request.user, permission_action(self.request, self), queryset)
        # A detail route looks its object up among those the user may view: another pool's
        # object is a 404, not a 403 (ActionPermission then asks about the action itself).
        view = f"{self.permission_noun}.view"
        if self.permission_noun and can(self.request.user, view):
            return scope(self.request.user, view, queryset)
        return queryset


class ReadOnlyApiViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    pass


class EmptySerializer(StrictSerializer):
    """Action endpoints that take no input still refuse unknown keys."""
