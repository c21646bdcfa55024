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


class ModelPermissions(permissions.DjangoModelPermissions):
    """Django model permissions, including ``view`` for reads (superusers have all)."""

    perms_map = {
        **permissions.DjangoModelPermissions.perms_map,
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": [],
    }


class ChangePermission(permissions.BasePermission):
    """For action endpoints (POST on an existing object): the change permission of the model."""

    def has_permission(self, request, view):
        model = view.get_queryset().model
        return bool(
            request.user
            and request.user.is_authenticated
            and request.user.has_perm(f"{model._meta.app_label}.change_{model._meta.model_name}")
        )


ACTION_PERMS = [permissions.IsAuthenticated, ChangePermission]

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
    permission_classes = [permissions.IsAuthenticated, ModelPermissions]
    lookup_value_regex = r"[0-9]+"


class ReadOnlyApiViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    pass


class EmptySerializer(StrictSerializer):
    """Action endpoints that take no input still refuse unknown keys."""
