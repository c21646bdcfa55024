"""Virtual appliances: upload, import from a URL, delete."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from ovmweb.inventory import models

from .. import serializers as s
from .base import RESPONSES_JOB, ReadOnlyApiViewSet, job_response, service, validated


@extend_schema_view(
    create=extend_schema(request={"multipart/form-data": s.VirtualApplianceUploadSerializer}, responses=RESPONSES_JOB),
    destroy=extend_schema(request=None, responses={k: v for k, v in RESPONSES_JOB.items() if k != 400}),
)
class VirtualApplianceViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    """Virtual appliances (an OVF with one or more VMs) in a repository's Assemblies/. Create
    VMs from them with ``POST /vms/`` and ``source: {"kind": "appliance", "appliance_vm": id}``."""

    queryset = models.VirtualAppliance.objects.prefetch_related("vms__disks")
    serializer_class = s.VirtualApplianceSerializer
    permission_noun = "appliance"
    permission_actions = {"import_url": "appliance.create"}
    # A file comes only as multipart; the URL import also takes JSON (its own parsers).
    parser_classes = [MultiPartParser, FormParser]

    def create(self, request, *args, **kwargs):
        """Upload an OVA (multipart) into a repository; 202 with the job that unpacks and records it."""
        data = validated(s.VirtualApplianceUploadSerializer, request)
        upload = data["file"]
        job = service("appliances").appliance_import(
            user=request.user,
            repository=data["repository"],
            name=data.get("name", ""),
            fileobj=upload,
            filename=upload.name,
        )
        return job_response(job)

    def destroy(self, request, *args, **kwargs):
        """Delete the appliance's files in Assemblies/ and its records, as a job; VMs made from it
        keep their disks. 409 while a job still imports it or copies its disks."""
        return job_response(service("appliances").appliance_delete(appliance=self.get_object(), user=request.user))

    @extend_schema(request=s.VirtualApplianceImportSerializer, responses=RESPONSES_JOB)
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[JSONParser, FormParser, MultiPartParser],
    )
    def import_url(self, request, format=None):
        """Import an OVA, or an .ovf next to its disks, from an HTTP(S) URL; 202 with the job."""
        data = validated(s.VirtualApplianceImportSerializer, request)
        job = service("appliances").appliance_import(
            user=request.user, repository=data["repository"], name=data.get("name", ""), url=data["url"]
        )
        return job_response(job)
