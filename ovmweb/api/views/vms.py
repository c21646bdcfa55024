"""Virtual machines: create, edit, delete, power actions, migrate, clone, move, export,
backup, disks, messages."""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from ovmweb.inventory import models, selectors
from ovmweb.inventory import permissions as vm_permissions

from .. import serializers as s
from .base import (
    MONITOR_HEADER,
    RESPONSES_409,
    RESPONSES_JOB,
    ApiViewSet,
    EmptySerializer,
    job_queued_since,
    job_response,
    last_job_id,
    monitor_link,
    permission_action,
    service,
    validated,
)


class VmBulkSerializer(s.VmMigrateSerializer):
    """Several VMs, one action (issue 13's bulk actions; migrations run one after another, 7.7)."""

    action = serializers.ChoiceField(choices=["start", "stop", "restart", "kill", "migrate", "delete"])
    vms = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=s.MAX_BIGINT), min_length=1, max_length=500
    )
    target_repository = None  # a bulk migration names a server or a pool only


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
    permission_noun = "vm"
    permission_actions = {
        "disks": "vm.disk_attach",
        "detach_disk": "vm.disk_detach",
        "messages": "vm.message",
        # Any of these at all; each VM is then checked for the action named (services/bulk.py).
        "bulk": ("vm.start", "vm.stop", "vm.restart", "vm.kill", "vm.migrate", "vm.delete"),
    }

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
        # access_vm asks ovmweb.inventory.permissions, as the pages and the consoles do.
        return selectors.access_vm(self.request.user, self.kwargs["pk"], permission_action(self.request, self))

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
        # From any source: the add permission, and the source must be one the user may see.
        vm_permissions.authorize_vm_create(request.user, data["source"])
        data["disks"] = [dict(d) for d in data.get("disks", ())]
        for d in data["disks"]:
            if "new" in d:
                d["new"] = dict(d["new"])
        data["vnics"] = [dict(v) for v in data.get("vnics", ())]
        before = last_job_id()
        vm = service("vms").vm_create(user=request.user, **data)
        operation = self.COPY_OPERATIONS.get(data["source"]["kind"])
        job = job_queued_since(after=before, target=vm, operation=operation) if operation else None
        return self._render(vm, status.HTTP_201_CREATED, headers=monitor_link(job))

    def update(self, request, *args, **kwargs):
        """Edit a VM. Runtime parameters of a running VM become ``pending_changes`` (seed 7.9)."""
        vm = self.get_object()
        data = validated(s.VmUpdateSerializer, request, partial=kwargs.get("partial", False), instance=vm)
        vm = service("vms").vm_update(vm=vm, user=request.user, **data)
        return self._render(vm)

    def destroy(self, request, *args, **kwargs):
        """Delete a VM (its disks go with it); 202 with the job."""
        return job_response(service("vms").vm_delete(vm=self.get_object(), user=request.user))

    def _simple_action(self, request, name: str) -> Response:
        validated(EmptySerializer, request)
        return job_response(service("vms").vm_action(vm=self.get_object(), action=name, user=request.user))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def start(self, request, pk=None, format=None):
        """Start a stopped VM (STOPPED -> STARTING -> RUNNING)."""
        return self._simple_action(request, "start")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None, format=None):
        """Shut a running VM down (RUNNING -> STOPPING -> STOPPED)."""
        return self._simple_action(request, "stop")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def restart(self, request, pk=None, format=None):
        """Restart a running VM (pending changes are NOT applied by a restart)."""
        return self._simple_action(request, "restart")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def kill(self, request, pk=None, format=None):
        """Power a VM off at once from any state but TEMPLATE; clears its HA flag."""
        return self._simple_action(request, "kill")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def suspend(self, request, pk=None, format=None):
        """Suspend a running VM."""
        return self._simple_action(request, "suspend")

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None, format=None):
        """Resume a suspended VM."""
        return self._simple_action(request, "resume")

    @extend_schema(request=s.VmMigrateSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def migrate(self, request, pk=None, format=None):
        """Live-migrate a running VM to a server of its pool (with its disks copied into
        ``target_repository`` when they are in a local repository), or move a stopped VM to
        another server pool."""
        vm = self.get_object()
        data = validated(s.VmMigrateSerializer, request)
        vm_permissions.authorize_vm_target_pool(request.user, "vm.migrate", data.get("target_pool"))
        return job_response(service("vm_migration").vm_migrate(vm=vm, user=request.user, **data))

    @extend_schema(request=VmBulkSerializer, responses=RESPONSES_JOB)
    @action(detail=False, methods=["post"], url_path="bulk")
    def bulk(self, request, format=None):
        """One action on several VMs: 202 with a parent job whose children (one per VM, in
        the order given) are the single-VM jobs; a VM the action is refused for gets a child
        that fails with the reason. Migrations run one after another (seed 7.7)."""
        data = validated(VmBulkSerializer, request)
        # Each VM as its own door would see it: 404 for one the user may not see, 403 for
        # one they may not act on, before anything is submitted.
        vms = [selectors.access_vm(request.user, pk, data["action"]) for pk in data.pop("vms")]
        if data["action"] == "migrate":  # and the pool they go to, as for one VM
            vm_permissions.authorize_vm_target_pool(request.user, "vm.migrate", data.get("target_pool"))
        return job_response(service("bulk").vm_bulk(user=request.user, vms=vms, **data))

    @extend_schema(request=s.VmCloneSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None, format=None):
        """Clone a VM or template, optionally with a clone customizer, optionally as a template."""
        data = validated(s.VmCloneSerializer, request)
        return job_response(service("vm_copies").vm_clone(vm=self.get_object(), user=request.user, **data))

    @extend_schema(request=s.VmMoveSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def move(self, request, pk=None, format=None):
        """Move a stopped VM's configuration and disks to other repositories: per disk with a
        clone customizer, or all to one ``target_repository`` (seed 7.7)."""
        vm = self.get_object()  # first: another pool's VM is a 404 whatever the input
        data = validated(s.VmMoveSerializer, request)
        return job_response(service("vm_copies").vm_move(vm=vm, user=request.user, **data))

    @extend_schema(request=EmptySerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def export(self, request, pk=None, format=None):
        """Export a stopped VM as an OVA (OVF 1.0 + streamOptimized VMDKs) into its repository's Assemblies/, as a job (at most four run at once)."""
        validated(EmptySerializer, request)
        return job_response(service("vm_copies").vm_export(vm=self.get_object(), user=request.user))

    @extend_schema(request=s.VmBackupSerializer, responses=RESPONSES_JOB)
    @action(detail=True, methods=["post"])
    def backup(self, request, pk=None, format=None):
        """Back up a VM as a cold clone named ``<vm>-backup-<UTC timestamp>`` in ``repository``
        (default: the VM's own); a running VM only as a hot clone with thin disks (seed 7.17, 7.6)."""
        data = validated(s.VmBackupSerializer, request)
        return job_response(service("vm_copies").vm_backup(vm=self.get_object(), user=request.user, **data))

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
    @action(detail=True, methods=["post"])
    def disks(self, request, pk=None, format=None):
        """Attach a virtual disk, or an ISO as CD-ROM, in the VM's next free slot (an ISO fills an
        empty CD-ROM drive first). On a running VM it is hot-plugged where the guest OS allows it
        (seed 7.14) by the job in ``job``; never while the VM is SUSPENDED."""
        vm = self.get_object()
        data = validated(s.VmDiskAttachSerializer, request)
        before = last_job_id()
        slot = service("vm_devices").vm_disk_attach(vm=vm, user=request.user, **data)
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
    )
    def detach_disk(self, request, pk=None, slot=None, format=None):
        """Detach the disk or CD-ROM in a slot. A CD-ROM of a running VM is ejected (the drive
        stays, empty); a disk of a running VM is hot-removed where the guest OS allows it."""
        vm = self.get_object()
        row = get_object_or_404(models.VmDiskSlot, vm=vm, slot=int(slot))
        before = last_job_id()
        service("vm_devices").vm_disk_detach(slot=row, user=request.user)
        job = job_queued_since(after=before, target=vm, operation="vm.hot_update")
        return job_response(job) if job else Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        request=s.VmMessagesSerializer,
        responses={202: s.JobListSerializer, 400: OpenApiResponse(), 409: s.ErrorDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def messages(self, request, pk=None, format=None):
        """Send key/value messages into the guest (seed 7.10); one job per message."""
        vm = self.get_object()  # first: another pool's VM is a 404 whatever the input
        data = validated(s.VmMessagesSerializer, request)
        jobs = service("messages").vm_send_messages(
            vm=vm, user=request.user, messages=[dict(m) for m in data["messages"]]
        )
        return Response({"jobs": s.JobSerializer(jobs, many=True).data}, status=status.HTTP_202_ACCEPTED)
