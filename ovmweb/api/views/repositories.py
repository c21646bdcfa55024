"""Repositories: create, refresh, present to a server pool."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.inventory import models
from ovmweb.jobs.models import Job

from .. import serializers as s
from .base import RESPONSES_JOB, EmptySerializer, ReadOnlyApiViewSet, job_response, service, validated


@extend_schema_view(create=extend_schema(request=s.RepositoryCreateSerializer, responses=RESPONSES_JOB))
class RepositoryViewSet(mixins.CreateModelMixin, ReadOnlyApiViewSet):
    queryset = models.Repository.objects.prefetch_related("server_pools")
    serializer_class = s.RepositorySerializer
    permission_noun = "repository"

    def create(self, request, *args, **kwargs):
        """Create a repository (a libvirt storage pool on its servers); 202 with the job."""
        data = validated(s.RepositoryCreateSerializer, request)
        data["server_pools"] = list(data.get("server_pools", ()))
        return job_response(service("repositories").repository_create(user=request.user, **data))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None, format=None):
        """Re-read the repository's contents and capacity."""
        validated(EmptySerializer, request)
        return job_response(service("repositories").repository_refresh(repository=self.get_object(), user=request.user))

    @extend_schema(request=s.RepositoryPresentSerializer, responses={200: s.RepositorySerializer, **RESPONSES_JOB})
    @action(detail=True, methods=["post"])
    def present(self, request, pk=None, format=None):
        """Present a shared repository to a server pool."""
        repository = self.get_object()
        data = validated(s.RepositoryPresentSerializer, request)
        result = service("repositories").repository_present(
            repository=repository, server_pool=data["server_pool"], user=request.user
        )
        if isinstance(result, Job):
            return job_response(result)
        repository.refresh_from_db()
        return Response(s.RepositorySerializer(repository).data)
