"""Jobs (abort, resume) and events (acknowledge)."""

from __future__ import annotations

from importlib import import_module

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.inventory import selectors
from ovmweb.inventory.permissions import authorize
from ovmweb.jobs.models import Event, Job

from .. import serializers as s
from .base import (
    RESPONSES_409,
    RESPONSES_JOB,
    EmptySerializer,
    ReadOnlyApiViewSet,
    job_response,
    service,
    validated,
)


class JobViewSet(ReadOnlyApiViewSet):
    queryset = Job.objects.select_related("user").prefetch_related("children")
    serializer_class = s.JobSerializer
    permission_noun = "job"
    # Resuming an export is exporting its VM again: decided on the VM below.
    permission_actions = {"resume": "job.view"}

    @extend_schema(request=EmptySerializer, responses={200: s.JobSerializer, **RESPONSES_409})
    @action(detail=True, methods=["post"])
    def abort(self, request, pk=None, format=None):
        """Ask a job to stop (its owner, or a user who may change jobs); a running job stops at its next step."""
        job = self.get_object()
        validated(EmptySerializer, request)
        job = import_module("ovmweb.jobs.services").job_request_abort(job=job, user=request.user)
        return Response(s.JobSerializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None, format=None):
        """Resume an aborted or failed VM export: a new job that keeps the disks it already converted."""
        job = self.get_object()
        # Only exports resume: who may export nothing learns nothing more about this job.
        authorize(request.user, "vm.export")
        validated(EmptySerializer, request)
        if job.operation != "vm.export":
            return job_response(service("exports").export_resume(job=job, user=request.user))  # 409: not an export
        vm = selectors.access_vm(request.user, job.params.get("vm_id"), "export")
        return job_response(service("vm_copies").vm_export(vm=vm, user=request.user, resume_job=job))


class EventViewSet(ReadOnlyApiViewSet):
    queryset = Event.objects.select_related("user", "acknowledged_by")
    serializer_class = s.EventSerializer
    permission_noun = "event"

    @extend_schema(request=EmptySerializer, responses={200: s.EventSerializer})
    @action(detail=True, methods=["post"])
    def acknowledge(self, request, pk=None, format=None):
        """Mark an event as seen."""
        validated(EmptySerializer, request)
        event = import_module("ovmweb.jobs.services").event_acknowledge(event=self.get_object(), user=request.user)
        return Response(s.EventSerializer(self.get_queryset().get(pk=event.pk)).data)
