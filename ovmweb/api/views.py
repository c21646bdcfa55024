"""Viewsets of the REST API. They validate the shape of a request with a
serializer, call ONE service, and render what it returns: 201/200 with the
object, or 202 with the Job that was queued."""

from __future__ import annotations

from importlib import import_module

from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Max
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from ovmweb.inventory import models, selectors
from ovmweb.inventory.services import pools as pool_services
from ovmweb.jobs.models import Event, Job

from . import serializers as s
from .mixins import StrictSerializer
from .pagination import Pagination
from .schema import StrictAutoSchema


def _service(name: str):
    """The service module ``ovmweb.inventory.services.<name>``.

    Imported when a request needs it: the service modules import the job
    runner and the hypervisor layer, which the URL configuration (loaded by
    every page) has no reason to pull in.
    """
    return import_module(f"ovmweb.inventory.services.{name}")


# --------------------------------------------------------------------- shared pieces


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


# --------------------------------------------------------------------- server pools, groups


@extend_schema_view(destroy=extend_schema(responses={204: None, **RESPONSES_409}))
class ServerPoolViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.ServerPool.objects.all()
    serializer_class = s.ServerPoolSerializer
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def perform_create(self, serializer):
        serializer.instance = pool_services.server_pool_create(user=self.request.user, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = pool_services.server_pool_update(
            pool=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.server_pool_delete(pool=instance, user=self.request.user)


@extend_schema_view(destroy=extend_schema(responses={204: None, **RESPONSES_409}))
class ProcessorCompatibilityGroupViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.ProcessorCompatibilityGroup.objects.prefetch_related("servers").order_by("name")
    serializer_class = s.ProcessorCompatibilityGroupSerializer

    def perform_create(self, serializer):
        serializer.instance = pool_services.compatibility_group_create(
            user=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = pool_services.compatibility_group_update(
            group=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.compatibility_group_delete(group=instance, user=self.request.user)


class AntiAffinityGroupViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.AntiAffinityGroup.objects.prefetch_related("vms").order_by("server_pool_id", "name")
    serializer_class = s.AntiAffinityGroupSerializer

    def perform_create(self, serializer):
        serializer.instance = pool_services.anti_affinity_group_create(
            user=self.request.user, **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = pool_services.anti_affinity_group_update(
            group=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        pool_services.anti_affinity_group_delete(group=instance, user=self.request.user)


# --------------------------------------------------------------------- servers


@extend_schema_view(
    partial_update=extend_schema(
        request=s.ServerUpdateSerializer, responses={200: s.ServerSerializer, **RESPONSES_409}
    ),
    destroy=extend_schema(request=None, responses={k: v for k, v in RESPONSES_JOB.items() if k != 400}),
)
class ServerViewSet(mixins.UpdateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.Server.objects.all()
    serializer_class = s.ServerSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def partial_update(self, request, *args, **kwargs):
        server = self.get_object()
        data = validated(s.ServerUpdateSerializer, request, partial=True, instance=server)
        servers = _service("servers")
        with transaction.atomic():
            if "inbound_migration_lock" in data:
                servers.server_set_inbound_lock(
                    server=server, user=request.user, locked=data.pop("inbound_migration_lock")
                )
            if data:
                servers.server_update(server=server, user=request.user, **data)
        server.refresh_from_db()
        return Response(s.ServerSerializer(server).data)

    def update(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        """Forget a server (OVM Manager's Delete); 202 with the job that removes ovmweb's SSH key
        from it. 409 while a VM on it is not stopped or while it owns local repositories."""
        return job_response(_service("servers").server_delete(server=self.get_object(), user=request.user))

    @extend_schema(request=s.ServerDiscoverSerializer, responses=RESPONSES_JOB)
    @action(detail=False, methods=["post"], permission_classes=[permissions.IsAuthenticated, ModelPermissions])
    def discover(self, request):
        """Discover a server: SSH in with its pinned host key, read its hardware and hypervisor."""
        data = validated(s.ServerDiscoverSerializer, request)
        job = _service("servers").server_discover(user=request.user, **data)
        return job_response(job)


# --------------------------------------------------------------------- storage


@extend_schema_view(create=extend_schema(request=s.RepositoryCreateSerializer, responses=RESPONSES_JOB))
class RepositoryViewSet(mixins.CreateModelMixin, ReadOnlyApiViewSet):
    queryset = models.Repository.objects.prefetch_related("server_pools")
    serializer_class = s.RepositorySerializer

    def create(self, request, *args, **kwargs):
        """Create a repository (a libvirt storage pool on its servers); 202 with the job."""
        data = validated(s.RepositoryCreateSerializer, request)
        data["server_pools"] = list(data.get("server_pools", ()))
        return job_response(_service("repositories").repository_create(user=request.user, **data))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def refresh(self, request, pk=None):
        """Re-read the repository's contents and capacity."""
        validated(EmptySerializer, request)
        return job_response(
            _service("repositories").repository_refresh(repository=self.get_object(), user=request.user)
        )

    @extend_schema(request=s.RepositoryPresentSerializer, responses={200: s.RepositorySerializer, **RESPONSES_JOB})
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def present(self, request, pk=None):
        """Present a shared repository to a server pool."""
        repository = self.get_object()
        data = validated(s.RepositoryPresentSerializer, request)
        result = _service("repositories").repository_present(
            repository=repository, server_pool=data["server_pool"], user=request.user
        )
        if isinstance(result, Job):
            return job_response(result)
        repository.refresh_from_db()
        return Response(s.RepositorySerializer(repository).data)


@extend_schema_view(
    create=extend_schema(request=s.VirtualDiskCreateSerializer, responses=RESPONSES_JOB),
    destroy=extend_schema(responses=RESPONSES_JOB),
)
class VirtualDiskViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.VirtualDisk.objects.all()
    serializer_class = s.VirtualDiskSerializer

    def create(self, request, *args, **kwargs):
        """Create a virtual disk in a repository; 202 with the job."""
        data = validated(s.VirtualDiskCreateSerializer, request)
        return job_response(_service("storage").disk_create(user=request.user, **data))

    def destroy(self, request, *args, **kwargs):
        """Delete a virtual disk (refused while a VM uses it); 202 with the job."""
        return job_response(_service("storage").disk_delete(disk=self.get_object(), user=request.user))

    @extend_schema(request=s.VirtualDiskResizeSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def resize(self, request, pk=None):
        """Grow a virtual disk."""
        data = validated(s.VirtualDiskResizeSerializer, request)
        return job_response(_service("storage").disk_resize(disk=self.get_object(), user=request.user, **data))


@extend_schema_view(create=extend_schema(request=s.IsoUploadSerializer, responses=RESPONSES_JOB))
class IsoFileViewSet(mixins.CreateModelMixin, ReadOnlyApiViewSet):
    queryset = models.IsoFile.objects.all()
    serializer_class = s.IsoFileSerializer
    parser_classes = [MultiPartParser, FormParser, JSONParser]

    def create(self, request, *args, **kwargs):
        """Upload an ISO file (multipart) into a repository's ISOs/; 202 with the job that stores it."""
        data = validated(s.IsoUploadSerializer, request)
        upload = data["file"]
        job = _service("storage").iso_upload(
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
        permission_classes=[permissions.IsAuthenticated, ModelPermissions],
    )
    def import_url(self, request):
        """Import an ISO file from an HTTP/FTP URL; 202 with the job."""
        data = validated(s.IsoImportSerializer, request)
        return job_response(_service("storage").iso_import(user=request.user, **data))


# --------------------------------------------------------------------- networks, MAC range


class NetworkViewSet(viewsets.ModelViewSet, ApiViewSet):
    queryset = models.Network.objects.prefetch_related("server_pools")
    serializer_class = s.NetworkSerializer

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        data["server_pools"] = list(data.get("server_pools", ()))
        serializer.instance = _service("networks").network_create(user=self.request.user, **data)

    def perform_update(self, serializer):
        serializer.instance = _service("networks").network_update(
            network=serializer.instance, user=self.request.user, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        _service("networks").network_delete(network=instance, user=self.request.user)


class MacRangeView(APIView):
    """The one MAC address range VNIC addresses are allocated from (seed 7.4)."""

    permission_classes = [permissions.IsAuthenticated]
    schema = StrictAutoSchema()
    serializer_class = s.MacRangeSerializer

    def _current(self) -> dict:
        current = _service("vnics").mac_range_get()
        return {"start": current.start, "end": current.end}

    @extend_schema(responses=s.MacRangeSerializer)
    def get(self, request):
        return Response(self._current())

    @extend_schema(request=s.MacRangeSerializer, responses={200: s.MacRangeSerializer, 400: OpenApiResponse()})
    def put(self, request):
        if not request.user.has_perm("inventory.change_macaddressrange"):
            raise PermissionDenied
        data = validated(s.MacRangeSerializer, request)
        _service("vnics").mac_range_set(start=data["start"], end=data["end"])
        return Response(self._current())


# --------------------------------------------------------------------- VNICs


@extend_schema_view(
    create=extend_schema(request=s.VnicCreateSerializer, responses={201: s.VnicSerializer, **RESPONSES_409}),
    destroy=extend_schema(responses={204: None, **RESPONSES_409}),
)
class VnicViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    queryset = models.Vnic.objects.all()
    serializer_class = s.VnicSerializer

    def create(self, request, *args, **kwargs):
        data = validated(s.VnicCreateSerializer, request)
        vnic = _service("vnics").vnic_create(user=request.user, **data)
        return Response(s.VnicSerializer(vnic).data, status=status.HTTP_201_CREATED)

    def destroy(self, request, *args, **kwargs):
        _service("vnics").vnic_delete(vnic=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --------------------------------------------------------------------- virtual machines


class VmFilterSerializer(serializers.Serializer):
    search = serializers.CharField(required=False, max_length=128)
    server_pool = serializers.IntegerField(required=False, min_value=1, max_value=s.MAX_BIGINT)
    server = serializers.IntegerField(required=False, min_value=1, max_value=s.MAX_BIGINT)
    status = serializers.ChoiceField(required=False, choices=models.choices.VmStatus.choices)


VM_FILTER_PARAMETERS = [
    OpenApiParameter("search", OpenApiTypes.STR, description=_("Part of the name")),
    OpenApiParameter("server_pool", OpenApiTypes.INT),
    OpenApiParameter("server", OpenApiTypes.INT),
    OpenApiParameter("status", OpenApiTypes.STR, enum=[c for c, _label in models.choices.VmStatus.choices]),
]


@extend_schema_view(
    list=extend_schema(parameters=VM_FILTER_PARAMETERS),
    create=extend_schema(
        request=s.VmCreateSerializer,
        parameters=[MONITOR_HEADER],
        responses={
            201: s.VirtualMachineSerializer,
            400: OpenApiResponse(description=_("Bad input: field errors.")),
            **RESPONSES_409,
        },
    ),
    update=extend_schema(request=s.VmUpdateSerializer, responses={200: s.VirtualMachineSerializer, **RESPONSES_409}),
    partial_update=extend_schema(
        request=s.VmUpdateSerializer, responses={200: s.VirtualMachineSerializer, **RESPONSES_409}
    ),
    destroy=extend_schema(responses=RESPONSES_JOB),
)
class VirtualMachineViewSet(viewsets.ModelViewSet, ApiViewSet):
    serializer_class = s.VirtualMachineSerializer
    queryset = models.VirtualMachine.objects.all()

    def get_queryset(self):
        if self.action != "list":
            return selectors.vm_queryset()
        filters = VmFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        # The representation names related objects by id: joining them would
        # only make the database sort wider rows for a deep offset.
        qs = selectors.vm_list(
            user=self.request.user, search=f.get("search"), pool=f.get("server_pool"), server=f.get("server")
        ).select_related(None)
        if "status" in f:
            qs = qs.filter(status=f["status"])
        return qs

    def get_object(self):
        # access_vm is the one permission check shared with the pages and the consoles.
        vm_action = "view" if self.request.method in permissions.SAFE_METHODS else "change"
        return selectors.access_vm(self.request.user, self.kwargs["pk"], vm_action)

    def _render(self, vm, code=status.HTTP_200_OK, headers=None) -> Response:
        vm = selectors.vm_queryset().get(pk=vm.pk)
        return Response(s.VirtualMachineSerializer(vm).data, status=code, headers=headers)

    # The job that copies the disks of a VM created from a template, a VM or an appliance.
    COPY_OPERATIONS = {"template": "vm.clone", "clone": "vm.clone", "appliance": "appliance.deploy"}

    def create(self, request, *args, **kwargs):
        """Create a VM from an ISO, a PVM install URL, a template, a VM or a virtual appliance (seed 7.1/7.2).

        The VM exists at once (201). From a template, a VM or an appliance its disks are
        copied by a job, named in the ``Link`` header (``rel="monitor"``)."""
        data = validated(s.VmCreateSerializer, request)
        data["source"] = data.get("source") or {"kind": "none"}
        data["disks"] = [dict(d) for d in data.get("disks", ())]
        for d in data["disks"]:
            if "new" in d:
                d["new"] = dict(d["new"])
        data["vnics"] = [dict(v) for v in data.get("vnics", ())]
        before = last_job_id()
        vm = _service("vms").vm_create(user=request.user, **data)
        operation = self.COPY_OPERATIONS.get(data["source"]["kind"])
        job = job_queued_since(after=before, target=vm, operation=operation) if operation else None
        return self._render(vm, status.HTTP_201_CREATED, headers=monitor_link(job))

    def update(self, request, *args, **kwargs):
        """Edit a VM. Runtime parameters of a running VM become ``pending_changes`` (seed 7.9)."""
        vm = self.get_object()
        data = validated(s.VmUpdateSerializer, request, partial=kwargs.get("partial", False), instance=vm)
        vm = _service("vms").vm_update(vm=vm, user=request.user, **data)
        return self._render(vm)

    def destroy(self, request, *args, **kwargs):
        """Delete a VM (its disks go with it); 202 with the job."""
        return job_response(_service("vms").vm_delete(vm=self.get_object(), user=request.user))

    def _simple_action(self, request, name: str) -> Response:
        validated(EmptySerializer, request)
        return job_response(_service("vms").vm_action(vm=self.get_object(), action=name, user=request.user))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def start(self, request, pk=None):
        """Start a stopped VM (STOPPED -> STARTING -> RUNNING)."""
        return self._simple_action(request, "start")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def stop(self, request, pk=None):
        """Shut a running VM down (RUNNING -> STOPPING -> STOPPED)."""
        return self._simple_action(request, "stop")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def restart(self, request, pk=None):
        """Restart a running VM (pending changes are NOT applied by a restart)."""
        return self._simple_action(request, "restart")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def kill(self, request, pk=None):
        """Power a VM off at once from any state but TEMPLATE; clears its HA flag."""
        return self._simple_action(request, "kill")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def suspend(self, request, pk=None):
        """Suspend a running VM."""
        return self._simple_action(request, "suspend")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def resume(self, request, pk=None):
        """Resume a suspended VM."""
        return self._simple_action(request, "resume")

    @extend_schema(request=s.VmMigrateSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def migrate(self, request, pk=None):
        """Live-migrate a running VM to a server of its pool (with its disks copied into
        ``target_repository`` when they are in a local repository), or move a stopped VM to
        another server pool."""
        data = validated(s.VmMigrateSerializer, request)
        return job_response(_service("vms").vm_migrate(vm=self.get_object(), user=request.user, **data))

    @extend_schema(request=s.VmCloneSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def clone(self, request, pk=None):
        """Clone a VM or template, optionally with a clone customizer, optionally as a template."""
        data = validated(s.VmCloneSerializer, request)
        return job_response(_service("vms").vm_clone(vm=self.get_object(), user=request.user, **data))

    @extend_schema(request=s.VmMoveSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def move(self, request, pk=None):
        """Move a stopped VM's configuration and disks to other repositories: per disk with a
        clone customizer, or all to one ``target_repository`` (seed 7.7)."""
        data = validated(s.VmMoveSerializer, request)
        return job_response(_service("vms").vm_move(vm=self.get_object(), user=request.user, **data))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def export(self, request, pk=None):
        """Export a stopped VM as an OVA (OVF 1.0 + streamOptimized VMDKs) into its repository's Assemblies/, as a job (at most four run at once)."""
        validated(EmptySerializer, request)
        return job_response(_service("vms").vm_export(vm=self.get_object(), user=request.user))

    @extend_schema(request=s.VmBackupSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def backup(self, request, pk=None):
        """Back up a VM as a cold clone named ``<vm>-backup-<UTC timestamp>`` in ``repository``
        (default: the VM's own); a running VM only as a hot clone with thin disks (seed 7.17, 7.6)."""
        data = validated(s.VmBackupSerializer, request)
        return job_response(_service("vms").vm_backup(vm=self.get_object(), user=request.user, **data))

    @extend_schema(
        request=s.VmDiskAttachSerializer,
        parameters=[MONITOR_HEADER],
        responses={
            201: s.VmDiskAttachResultSerializer,
            400: OpenApiResponse(description=_("Bad input: field errors.")),
            409: OpenApiResponse(
                s.ErrorDetailSerializer, description=_("The VM's state or the disk's use forbids it.")
            ),
        },
    )
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def disks(self, request, pk=None):
        """Attach a virtual disk, or an ISO as CD-ROM, in the VM's next free slot (an ISO fills an
        empty CD-ROM drive first). On a running VM it is hot-plugged where the guest OS allows it
        (seed 7.14) by the job in ``job``; never while the VM is SUSPENDED."""
        vm = self.get_object()
        data = validated(s.VmDiskAttachSerializer, request)
        before = last_job_id()
        slot = _service("vms").vm_disk_attach(vm=vm, user=request.user, **data)
        job = job_queued_since(after=before, target=vm, operation="vm.hot_update")
        slot = models.VmDiskSlot.objects.select_related("virtual_disk", "iso").get(pk=slot.pk)
        body = {"slot": s.VmDiskSlotSerializer(slot).data, "job": s.JobSerializer(job).data if job else None}
        return Response(body, status=status.HTTP_201_CREATED, headers=monitor_link(job))

    @extend_schema(
        parameters=[
            OpenApiParameter("slot", OpenApiTypes.INT, OpenApiParameter.PATH, description=_("Slot number (0-63)."))
        ],
        request=None,
        responses={
            202: OpenApiResponse(s.JobSerializer, description=_("Running VM: the hot-remove job.")),
            204: OpenApiResponse(description=_("Stopped VM: detached.")),
            404: OpenApiResponse(description=_("No such slot.")),
            409: OpenApiResponse(s.ErrorDetailSerializer, description=_("The VM's state forbids it.")),
        },
    )
    @action(
        detail=True,
        methods=["delete"],
        url_path=r"disks/(?P<slot>[0-9]{1,2})",
        url_name="disk-detach",
        permission_classes=ACTION_PERMS,
    )
    def detach_disk(self, request, pk=None, slot=None):
        """Detach the disk or CD-ROM in a slot. A CD-ROM of a running VM is ejected (the drive
        stays, empty); a disk of a running VM is hot-removed where the guest OS allows it."""
        vm = self.get_object()
        row = get_object_or_404(models.VmDiskSlot, vm=vm, slot=int(slot))
        before = last_job_id()
        _service("vms").vm_disk_detach(slot=row, user=request.user)
        job = job_queued_since(after=before, target=vm, operation="vm.hot_update")
        return job_response(job) if job else Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=s.VmMessagesSerializer,
        responses={202: s.JobListSerializer, 400: OpenApiResponse(), 409: s.ErrorDetailSerializer},
    )
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def messages(self, request, pk=None):
        """Send key/value messages into the guest (seed 7.10); one job per message."""
        data = validated(s.VmMessagesSerializer, request)
        jobs = _service("messages").vm_send_messages(
            vm=self.get_object(), user=request.user, messages=[dict(m) for m in data["messages"]]
        )
        return Response({"jobs": s.JobSerializer(jobs, many=True).data}, status=status.HTTP_202_ACCEPTED)


# --------------------------------------------------------------------- customizers, appliances


@extend_schema_view(
    update=extend_schema(request=s.CloneCustomizerUpdateSerializer, responses={200: s.CloneCustomizerSerializer}),
    partial_update=extend_schema(
        request=s.CloneCustomizerUpdateSerializer, responses={200: s.CloneCustomizerSerializer}
    ),
)
class CloneCustomizerViewSet(viewsets.ModelViewSet, ApiViewSet):
    """Clone customizers of a VM: per-disk target repository and clone type, network of each
    VNIC. An update keeps the VM; ``disks``/``networks``, when given, replace the whole list."""

    queryset = models.CloneCustomizer.objects.prefetch_related("disks", "networks")
    serializer_class = s.CloneCustomizerSerializer

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.CloneCustomizerUpdateSerializer
        return s.CloneCustomizerSerializer

    @staticmethod
    def _items(data: dict) -> dict:
        for key in ("disks", "networks"):
            if key in data:
                data[key] = [dict(item) for item in data[key]]
        return data

    def perform_create(self, serializer):
        data = self._items(dict(serializer.validated_data))
        serializer.instance = _service("customizers").customizer_create(user=self.request.user, **data)

    def perform_update(self, serializer):
        data = self._items(dict(serializer.validated_data))
        serializer.instance = _service("customizers").customizer_update(
            customizer=serializer.instance, user=self.request.user, **data
        )

    def perform_destroy(self, instance):
        _service("customizers").customizer_delete(customizer=instance, user=self.request.user)


@extend_schema_view(
    create=extend_schema(request={"multipart/form-data": s.VirtualApplianceUploadSerializer}, responses=RESPONSES_JOB),
    destroy=extend_schema(request=None, responses={k: v for k, v in RESPONSES_JOB.items() if k != 400}),
)
class VirtualApplianceViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, ReadOnlyApiViewSet):
    """Virtual appliances (an OVF with one or more VMs) in a repository's Assemblies/. Create
    VMs from them with ``POST /vms/`` and ``source: {"kind": "appliance", "appliance_vm": id}``."""

    queryset = models.VirtualAppliance.objects.prefetch_related("vms__disks")
    serializer_class = s.VirtualApplianceSerializer
    # A file comes only as multipart; the URL import also takes JSON (its own parsers).
    parser_classes = [MultiPartParser, FormParser]

    def create(self, request, *args, **kwargs):
        """Upload an OVA (multipart) into a repository; 202 with the job that unpacks and records it."""
        data = validated(s.VirtualApplianceUploadSerializer, request)
        upload = data["file"]
        job = _service("appliances").appliance_import(
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
        return job_response(_service("appliances").appliance_delete(appliance=self.get_object(), user=request.user))

    @extend_schema(request=s.VirtualApplianceImportSerializer, responses=RESPONSES_JOB)
    @action(
        detail=False,
        methods=["post"],
        url_path="import",
        parser_classes=[JSONParser, FormParser, MultiPartParser],
        permission_classes=[permissions.IsAuthenticated, ModelPermissions],
    )
    def import_url(self, request):
        """Import an OVA, or an .ovf next to its disks, from an HTTP(S) URL; 202 with the job."""
        data = validated(s.VirtualApplianceImportSerializer, request)
        job = _service("appliances").appliance_import(
            user=request.user, repository=data["repository"], name=data.get("name", ""), url=data["url"]
        )
        return job_response(job)


# --------------------------------------------------------------------- jobs, events


class JobViewSet(ReadOnlyApiViewSet):
    queryset = Job.objects.select_related("user").prefetch_related("children")
    serializer_class = s.JobSerializer

    @extend_schema(request=EmptySerializer, responses={200: s.JobSerializer, **RESPONSES_409})
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def abort(self, request, pk=None):
        """Ask a job to stop; a running job stops at its next step."""
        job = get_object_or_404(Job, pk=pk)
        if job.user_id != request.user.pk and not request.user.has_perm("jobs.change_job"):
            raise PermissionDenied
        validated(EmptySerializer, request)
        job = import_module("ovmweb.jobs.services").job_request_abort(job=job, user=request.user)
        return Response(s.JobSerializer(self.get_queryset().get(pk=job.pk)).data)

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"], permission_classes=[permissions.IsAuthenticated])
    def resume(self, request, pk=None):
        """Resume an aborted or failed VM export: a new job that keeps the disks it already converted."""
        job = get_object_or_404(Job, pk=pk)
        validated(EmptySerializer, request)
        if job.operation != "vm.export":
            return job_response(_service("exports").export_resume(job=job, user=request.user))  # 409: not an export
        vm = selectors.access_vm(request.user, job.params.get("vm_id"), "change")
        return job_response(_service("vms").vm_export(vm=vm, user=request.user, resume_job=job))


class EventViewSet(ReadOnlyApiViewSet):
    queryset = Event.objects.select_related("user", "acknowledged_by")
    serializer_class = s.EventSerializer

    @extend_schema(request=EmptySerializer, responses={200: s.EventSerializer})
    @action(detail=True, methods=["post"], permission_classes=ACTION_PERMS)
    def acknowledge(self, request, pk=None):
        """Mark an event as seen."""
        validated(EmptySerializer, request)
        event = import_module("ovmweb.jobs.services").event_acknowledge(event=self.get_object(), user=request.user)
        return Response(s.EventSerializer(self.get_queryset().get(pk=event.pk)).data)
