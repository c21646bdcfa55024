"""The ``vm.hot_update`` job: changes of a running VM that the services found
hot-pluggable (seed 7.13, 7.14), applied live and in the persistent definition."""

from __future__ import annotations

from django.utils.translation import gettext as _

from ovmweb.errors import DriverError, OperationFailed
from ovmweb.hypervisor.base import DiskSpec, Driver, NicSpec
from ovmweb.jobs.registry import JobContext, operation

from ..models import VirtualMachine
from ..services.vms import vm_revert_hot_change
from .vm_domain import load_vm, running_driver, slot_disk_spec, vnic_spec


@operation("vm.hot_update")
def vm_hot_update(
    ctx: JobContext,
    *,
    vm_id: int,
    changes: dict | None = None,
    attach_vnic_id: int | None = None,
    detach_mac: str | None = None,
    detach_model: str | None = None,
    attach_slot_id: int | None = None,
    detach_disk: dict | None = None,
    media: dict | None = None,
) -> dict:
    """Changes of a running VM that the services found hot-pluggable (7.13, 7.14): vCPUs and
    memory, and devices (VNICs, disks, CD-ROM media), live and in the persistent definition.

    The inventory already holds the change; if the hypervisor refuses the hot-plug, the
    job fails saying so and the change takes effect at the next start (it is in the
    definition written then)."""
    vm = load_vm(vm_id)
    hot = _HotUpdate(ctx, vm, running_driver(vm))
    hot.runtime(changes or {})
    if attach_vnic_id is not None:
        hot.attach_vnic(attach_vnic_id)
    if detach_mac is not None:
        hot.detach_vnic(detach_mac, detach_model)
    if attach_slot_id is not None:
        hot.attach_slot(attach_slot_id)
    if detach_disk is not None:
        hot.detach_disk(detach_disk)
    if media is not None:
        hot.change_media(media)
    return {"applied": hot.applied}


class _HotUpdate:
    """The steps of one ``vm.hot_update`` job on a running VM; ``applied`` records each one done."""

    def __init__(self, ctx: JobContext, vm: VirtualMachine, driver: Driver):
        self.ctx, self.vm, self.driver = ctx, vm, driver
        self.uuid = str(vm.uuid)
        self.applied: dict = {}

    def runtime(self, changes: dict) -> None:
        """vCPUs and memory. One the hypervisor refuses is reverted to what runs and left pending."""
        driver, vm = self.driver, self.vm
        info = driver.domain_info(self.uuid)
        for field, value in changes.items():
            setter = {"vcpus": driver.set_vcpus, "memory_mib": driver.set_memory}[field]
            try:
                setter(self.uuid, int(value))
                self.applied[field] = value
            except DriverError as exc:
                running = info.vcpus if field == "vcpus" else info.memory_mib
                vm_revert_hot_change(
                    vm=vm, field=field, running_value=running, wanted=value, job=self.ctx.job, error=str(exc)
                )

    def _device(self, what: str, action) -> None:
        try:
            self.applied[what] = action()
        except DriverError as exc:
            raise OperationFailed(
                _("%(what)s of running %(vm)s failed (%(err)s); the change takes effect at its next start.")
                % {"what": what, "vm": self.vm.name, "err": exc}
            ) from exc

    def attach_vnic(self, vnic_id: int) -> None:
        from ..models import Vnic

        vnic = Vnic.objects.select_related("network").filter(pk=vnic_id, vm=self.vm).first()
        if vnic is not None:
            self._device(
                _("Hot-add of VNIC %(mac)s") % {"mac": vnic.mac},
                lambda: self.driver.attach_device(self.uuid, vnic_spec(vnic), domain_type=self.vm.domain_type),
            )

    def detach_vnic(self, mac: str, model: str | None) -> None:
        self._device(
            _("Hot-remove of VNIC %(mac)s") % {"mac": mac},
            lambda: self.driver.detach_device(self.uuid, NicSpec(mac=mac, model=model or "virtio")) or mac,
        )

    def attach_slot(self, slot_id: int) -> None:
        from ..models import VmDiskSlot

        slot = (
            VmDiskSlot.objects.select_related("virtual_disk__repository", "iso__repository")
            .filter(pk=slot_id, vm=self.vm)
            .first()
        )
        if slot is not None:
            self._device(
                _("Hot-add of disk slot %(n)d") % {"n": slot.slot},
                lambda: self.driver.attach_device(self.uuid, slot_disk_spec(slot), domain_type=self.vm.domain_type),
            )

    def detach_disk(self, disk: dict) -> None:
        self._device(
            _("Hot-remove of %(path)s") % {"path": disk["path"]},
            lambda: (
                self.driver.detach_device(self.uuid, DiskSpec(path=disk["path"], device=disk.get("device", "disk")))
                or disk["path"]
            ),
        )

    def change_media(self, media: dict) -> None:
        self._device(
            _("CD-ROM change to %(path)s") % {"path": media["new"] or _("empty")},
            lambda: (
                self.driver.change_media(self.uuid, current_path=media["current"], new_path=media["new"])
                or media["new"]
            ),
        )
