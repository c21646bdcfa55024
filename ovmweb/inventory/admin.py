"""Django admin for the inventory. Every edit goes through the services (see
ovmweb.core.admin.ServiceAdmin); rows that only jobs write are read-only."""

from __future__ import annotations

from importlib import import_module

from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html_join
from django.utils.translation import gettext_lazy as _

from ovmweb.core.admin import ServiceAdmin, run_service_action

from . import (
    admin_activity,  # noqa: F401 - registers the Job, Event and ObjectLock admins
    models,
    permissions,
)
from .admin_access import AuthorizedAdmin, ReadOnlyAuthorizedAdmin, authorized


def _service(name: str):
    # Service modules pull in the job runner and the hypervisor layer; the admin
    # registry is imported by every process, so they load on first use.
    return import_module(f"ovmweb.inventory.services.{name}")


class CrudServiceAdmin(AuthorizedAdmin, ServiceAdmin):
    """A model whose services module has the house trio ``<noun>_create(user=, **fields)``,
    ``<noun>_update(<service_object>=obj, user=, **changes)`` and
    ``<noun>_delete(<service_object>=obj, user=)``: subclasses name the module (under
    ovmweb.inventory.services, loaded on first use) and the noun instead of spelling
    out the three calls."""

    service_module: str
    service_noun: str
    service_object: str

    def _service_function(self, verb: str):
        return getattr(_service(self.service_module), f"{self.service_noun}_{verb}")

    def service_create(self, request, data):
        return self._service_function("create")(user=request.user, **data)

    def service_update(self, request, obj, changes):
        return self._service_function("update")(**{self.service_object: obj}, user=request.user, **changes)

    def service_delete(self, request, obj):
        self._service_function("delete")(**{self.service_object: obj}, user=request.user)


@admin.register(models.ServerPool)
class ServerPoolAdmin(CrudServiceAdmin):
    list_display = ["name", "architecture", "created_at"]
    list_filter = ["architecture"]
    search_fields = ["name", "description"]
    # DRS/DPM are set on the pool page (pools.server_pool_set_policies), not here.
    fields = ["name", "architecture", "description"]
    permission_noun = "pool"
    # server_pool_create / server_pool_update / server_pool_delete
    service_module, service_noun, service_object = "pools", "server_pool", "pool"


@admin.register(models.ProcessorCompatibilityGroup)
class ProcessorCompatibilityGroupAdmin(CrudServiceAdmin):
    list_display = ["name", "description"]
    search_fields = ["name"]
    permission_noun = "compatibility_group"
    # compatibility_group_create / compatibility_group_update / compatibility_group_delete
    service_module, service_noun, service_object = "pools", "compatibility_group", "group"


@admin.register(models.AntiAffinityGroup)
class AntiAffinityGroupAdmin(CrudServiceAdmin):
    list_display = ["name", "server_pool"]
    list_filter = ["server_pool"]
    search_fields = ["name"]
    filter_horizontal = ["vms"]
    permission_noun = "anti_affinity_group"
    # anti_affinity_group_create / anti_affinity_group_update / anti_affinity_group_delete
    service_module, service_noun, service_object = "pools", "anti_affinity_group", "group"


@admin.register(models.Server)
class ServerAdmin(AuthorizedAdmin, ServiceAdmin):
    """Servers are added by discovery (a job that pins the host key), so the admin cannot add
    them. Deleting one queues the ``server.delete`` job (``server_delete``), which removes
    ovmweb's SSH key from it and every per-server file here before the row goes."""

    list_display = [
        "name",
        "hostname",
        "transport",
        "status",
        "server_pool",
        "cpu_vendor",
        "cpu_cores",
        "memory_mib",
        "inbound_migration_lock",
    ]
    list_filter = ["status", "transport", "server_pool", "inbound_migration_lock"]
    permission_noun = "server"
    search_fields = ["name", "hostname", "host_uuid"]
    fields = [
        "name",
        "server_pool",
        "compatibility_group",
        "inbound_migration_lock",
        "hostname",
        "transport",
        "ssh_port",
        "ssh_user",
        "host_key_fingerprint",
        "status",
        "status_message",
        "cpu_vendor",
        "cpu_family",
        "cpu_model",
        "cpu_model_name",
        "cpu_cores",
        "memory_mib",
        "libvirt_version",
        "qemu_version",
        "domain_types",
        "last_seen_at",
    ]
    readonly_fields = [
        "hostname",
        "transport",
        "ssh_port",
        "ssh_user",
        "host_key_fingerprint",
        "status",
        "status_message",
        "cpu_vendor",
        "cpu_family",
        "cpu_model",
        "cpu_model_name",
        "cpu_cores",
        "memory_mib",
        "libvirt_version",
        "qemu_version",
        "domain_types",
        "last_seen_at",
    ]

    def has_add_permission(self, request):
        return False

    def service_delete(self, request, obj):
        # The row stays until the job has run: the confirmation names the job, not a deletion.
        request.ovmweb_queued_job = _service("servers").server_delete(server=obj, user=request.user)

    def response_delete(self, request, obj_display, obj_id):
        job = getattr(request, "ovmweb_queued_job", None)
        if job is None:
            return super().response_delete(request, obj_display, obj_id)
        self.message_user(
            request,
            _("Deletion of server %(name)s queued as job #%(job)s.") % {"name": obj_display, "job": job.pk},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:inventory_server_changelist", current_app=self.admin_site.name))

    def service_update(self, request, obj, changes):
        servers = _service("servers")
        if "inbound_migration_lock" in changes:
            servers.server_set_inbound_lock(server=obj, user=request.user, locked=changes.pop("inbound_migration_lock"))
        if changes:
            return servers.server_update(server=obj, user=request.user, **changes)
        return obj


@admin.register(models.Repository)
class RepositoryAdmin(AuthorizedAdmin, ServiceAdmin):
    """Creating a repository builds a storage pool on its servers (a job): that is the API's and
    the pages' work. Here a repository can be presented to more server pools."""

    list_display = ["name", "kind", "backend", "path", "server", "capacity_bytes", "available_bytes", "refreshed_at"]
    list_filter = ["kind", "backend"]
    search_fields = ["name", "path", "nfs_server"]
    # An edit here presents the repository to more server pools.
    permission_noun = "repository"
    permission_verbs = {"view": "view", "change": "present"}
    fields = [
        "name",
        "kind",
        "backend",
        "path",
        "nfs_server",
        "nfs_export",
        "server",
        "server_pools",
        "capacity_bytes",
        "allocation_bytes",
        "available_bytes",
        "refreshed_at",
    ]
    readonly_fields = [
        "name",
        "kind",
        "backend",
        "path",
        "nfs_server",
        "nfs_export",
        "server",
        "capacity_bytes",
        "allocation_bytes",
        "available_bytes",
        "refreshed_at",
    ]
    filter_horizontal = ["server_pools"]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def service_update(self, request, obj, changes):
        from django.core.exceptions import ValidationError

        wanted = set(changes.get("server_pools", ()))
        current = set(obj.server_pools.all())
        if current - wanted:
            raise ValidationError({"server_pools": _("A repository cannot be withdrawn from a server pool here.")})
        repositories = _service("repositories")
        for pool in wanted - current:
            repositories.repository_present(repository=obj, server_pool=pool, user=request.user)
        return obj


@admin.register(models.Network)
class NetworkAdmin(CrudServiceAdmin):
    list_display = ["name", "bridge", "libvirt_network", "vlan_id", "roles"]
    search_fields = ["name", "bridge", "libvirt_network"]
    filter_horizontal = ["server_pools"]
    permission_noun = "network"
    # network_create / network_update / network_delete
    service_module, service_noun, service_object = "networks", "network", "network"

    def service_create(self, request, data):
        data["server_pools"] = list(data.get("server_pools", ()))
        return super().service_create(request, data)


@admin.register(models.MacAddressRange)
class MacAddressRangeAdmin(AuthorizedAdmin, ServiceAdmin):
    list_display = ["start", "end"]
    # Adding the singleton is setting the range.
    permission_noun = "mac_range"
    permission_verbs = {"view": "view", "add": "change", "change": "change"}

    def has_add_permission(self, request):
        # A singleton: the row exists as soon as anything asked for it.
        return super().has_add_permission(request) and not models.MacAddressRange.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False

    def service_create(self, request, data):
        return _service("vnics").mac_range_set(start=data["start"], end=data["end"])

    def service_update(self, request, obj, changes):
        return _service("vnics").mac_range_set(start=changes.get("start", obj.start), end=changes.get("end", obj.end))


@admin.register(models.VirtualMachine)
class VirtualMachineAdmin(CrudServiceAdmin):
    list_display = ["name", "status", "domain_type", "os_type", "server_pool", "server", "vcpus", "memory_mib"]
    list_filter = ["status", "domain_type", "os_type", "server_pool", "ha_enabled"]
    search_fields = ["name", "description", "uuid"]
    list_select_related = ["server_pool", "server"]
    permission_noun = "vm"
    readonly_fields = [
        "status",
        "uuid",
        "server",
        "pending_changes",
        "vnc_port",
        "serial_port",
        "origin",
        "disks",
        "vnic_list",
    ]
    actions = ["start_vms", "stop_vms", "kill_vms"]
    # vm_create / vm_update / vm_delete
    service_module, service_noun, service_object = "vms", "vm", "vm"

    def get_readonly_fields(self, request, obj=None):
        # Placement changes are migrations (a job), not edits.
        extra = ["server_pool", "repository"] if obj is not None else []
        return [*self.readonly_fields, *extra]

    @admin.display(description=_("disks"))
    def disks(self, obj):
        slots = obj.disk_slots.select_related("virtual_disk", "iso")
        return (
            format_html_join(", ", "{}: {}", ((s.slot, s.virtual_disk or s.iso or s.get_kind_display()) for s in slots))
            or "-"
        )

    @admin.display(description=_("VNICs"))
    def vnic_list(self, obj):
        return (
            format_html_join(", ", "{} ({})", ((v.mac, v.network or "-") for v in obj.vnics.select_related("network")))
            or "-"
        )

    def service_create(self, request, data):
        data = {k: v for k, v in data.items() if k != "origin"}
        return super().service_create(request, {**data, "source": {"kind": "none"}})

    def _act(self, request, queryset, action, done):
        vms = _service("vms")
        run_service_action(
            self,
            request,
            queryset,
            authorized(request, f"vm.{action}", lambda vm: vms.vm_action(vm=vm, action=action, user=request.user)),
            done,
        )

    @admin.action(description=_("Start selected virtual machines"), permissions=["change"])
    def start_vms(self, request, queryset):
        self._act(request, queryset, "start", _("start jobs queued"))

    @admin.action(description=_("Stop selected virtual machines"), permissions=["change"])
    def stop_vms(self, request, queryset):
        self._act(request, queryset, "stop", _("stop jobs queued"))

    @admin.action(description=_("Kill selected virtual machines"), permissions=["change"])
    def kill_vms(self, request, queryset):
        self._act(request, queryset, "kill", _("kill jobs queued"))


@admin.register(models.Vnic)
class VnicAdmin(AuthorizedAdmin, ServiceAdmin):
    list_display = ["mac", "vm", "network", "model", "position"]
    list_filter = ["model", "network"]
    search_fields = ["mac", "vm__name"]
    list_select_related = ["vm", "network"]
    fields = ["vm", "network", "model", "mac"]
    permission_noun = "vnic"

    def get_readonly_fields(self, request, obj=None):
        # A VNIC is created and deleted; its MAC and VM never change.
        return ["vm", "network", "model", "mac"] if obj is not None else []

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None and "mac" in form.base_fields:
            form.base_fields["mac"].required = False
            form.base_fields["mac"].help_text = _("Leave empty to take the next free address of the MAC range.")
        return form

    def service_create(self, request, data):
        # The object of a new VNIC is its VM (change permission on it).
        permissions.authorize(request.user, "vnic.create", data["vm"])
        return _service("vnics").vnic_create(
            vm=data["vm"],
            user=request.user,
            network=data.get("network"),
            model=data.get("model") or None,
            mac=data.get("mac") or None,
        )

    def service_update(self, request, obj, changes):
        return obj

    def service_delete(self, request, obj):
        _service("vnics").vnic_delete(vnic=obj, user=request.user)


@admin.register(models.CloneCustomizer)
class CloneCustomizerAdmin(AuthorizedAdmin, ServiceAdmin):
    list_display = ["name", "vm", "created_at"]
    permission_noun = "customizer"
    search_fields = ["name", "vm__name"]
    fields = ["name", "vm", "description"]
    readonly_fields = ["vm"]

    def has_add_permission(self, request):
        # Its per-disk and per-VNIC plan is built in the API or the pages.
        return False

    def service_update(self, request, obj, changes):
        return _service("customizers").customizer_update(customizer=obj, user=request.user, **changes)

    def service_delete(self, request, obj):
        _service("customizers").customizer_delete(customizer=obj, user=request.user)


@admin.register(models.IsoFile)
class IsoFileAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "iso"
    list_display = ["name", "repository", "size_bytes", "created_at"]
    list_filter = ["repository"]
    search_fields = ["name", "sha256"]


@admin.register(models.VirtualDisk)
class VirtualDiskAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "disk"
    list_display = ["name", "repository", "size_bytes", "allocation_bytes", "format", "sparse", "shareable"]
    list_filter = ["repository", "format", "sparse", "shareable"]
    search_fields = ["name", "volume"]


@admin.register(models.VmDiskSlot)
class VmDiskSlotAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "vm"
    list_display = ["vm", "slot", "kind", "virtual_disk", "iso", "bus"]
    list_filter = ["kind", "bus"]
    search_fields = ["vm__name"]
    list_select_related = ["vm", "virtual_disk", "iso"]


class VirtualApplianceVmInline(admin.TabularInline):
    model = models.VirtualApplianceVm
    extra = 0
    fields = ["name", "vcpus", "memory_mib", "os_type"]
    readonly_fields = fields

    def has_view_permission(self, request, obj=None):
        return permissions.can(request.user, "appliance.view", obj)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(models.VirtualAppliance)
class VirtualApplianceAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "appliance"
    list_display = ["name", "repository", "ovf_path", "created_at"]
    search_fields = ["name"]
    inlines = [VirtualApplianceVmInline]


@admin.register(models.VirtualApplianceVm)
class VirtualApplianceVmAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "appliance"
    list_display = ["name", "appliance", "vcpus", "memory_mib", "os_type"]
    search_fields = ["name", "appliance__name"]


@admin.register(models.CloneCustomizerDisk)
class CloneCustomizerDiskAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "customizer"
    list_display = ["customizer", "slot", "target_repository", "clone_type"]


@admin.register(models.CloneCustomizerNetwork)
class CloneCustomizerNetworkAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "customizer"
    list_display = ["customizer", "vnic", "network"]


@admin.register(models.VmMessage)
class VmMessageAdmin(ReadOnlyAuthorizedAdmin):
    permission_noun = "vm_message"
    list_display = ["vm", "key", "shown_value", "result", "user", "created_at"]
    list_filter = ["result", "hidden"]
    search_fields = ["vm__name", "key"]
    exclude = ["value"]
    readonly_fields = ["shown_value"]

    @admin.display(description=_("value"))
    def shown_value(self, obj):
        return _("(hidden)") if obj.hidden else obj.value


# Role assignments (estate-wide roles are granted here).
from . import admin_roles  # noqa: E402, F401
