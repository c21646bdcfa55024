"""Virtual disks and ISO files in repositories."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser

from ovmweb.inventory import models

from .. import serializers as s
from .base import RESPONSES_JOB, EmptySerializer, ReadOnlyApiViewSet, job_response, service, validated


@extend_schema_view(
    create=extend_schema(request=s.VirtualDiskCreateSerializer, responses=RESPONSES_JOB),
    destroy=extend_schema(responses=RESPONSES_JOB),
)
class VirtualDiskViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.VirtualDisk.objects.all()
    serializer_class = s.VirtualDiskSerializer
    permission_noun = "disk"
    # Flattening rewrites the disk's own file: the permission to change it.
    permission_actions = {"flatten": "disk.resize"}

    def create(self, request, *args, **kwargs):
        """Create a virtual disk in a repository; 202 with the job."""
        data = validated(s.VirtualDiskCreateSerializer, request)
        return job_response(service("storage").disk_create(user=request.user, **data))

    def destroy(self, request, *args, **kwargs):
        """Delete a virtual disk (refused while a VM uses it); 202 with the job."""
        return job_response(service("storage").disk_delete(disk=self.get_object(), user=request.user))

    @extend_schema(request=s.VirtualDiskResizeSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def resize(self, request, pk=None, format=None):
        """Grow a virtual disk."""
        disk = self.get_object()  # first: another pool's disk is a 404 whatever the input
        data = validated(s.VirtualDiskResizeSerializer, request)
        return job_response(service("storage").disk_resize(disk=disk, user=request.user, **data))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def flatten(self, request, pk=None, format=None):
        """Make a thin clone (or a thin-cloned disk) standalone: a full copy read through its
        chain replaces the overlay, and a base left without clones is deleted; 202 with the job."""
        disk = self.get_object()
        validated(EmptySerializer, request)
        return job_response(service("disk_copies").disk_flatten(disk=disk, user=request.user))


@extend_schema_view(create=extend_schema(request=s.IsoUploadSerializer, responses=RESPONSES_JOB))
class IsoFileViewSet(mixins.CreateModelMixin, ReadOnlyApiViewSet):
    queryset = models.IsoFile.objects.all()
    serializer_class = s.IsoFileSerializer
    permission_noun = "iso"
    permission_actions = {"import_url": "iso.create"}
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def create(self, request, *args, **kwargs):
        """Upload an ISO file (multipart) into a repository's ISOs/; 202 with the job that stores it."""
        data = validated(s.IsoUploadSerializer, request)
        upload = data["file"]
        job = service("storage").iso_upload(
            repository=data["repository"],
            user=request.user,
            name=data.get("name") or upload.name,
            fileobj=upload,
            size=upload.size,
        )
        return job_response(job)

    @extend_schema(request=s.IsoImportSerializer, responses=RESPONSES_JOB)
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
    )
    def import_url(self, request, format=None):
        """Import an ISO file from an HTTP/FTP URL; 202 with the job."""
        data = validated(s.IsoImportSerializer, request)
        return job_response(service("storage").iso_import(user=request.user, **data))
