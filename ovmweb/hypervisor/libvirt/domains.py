"""Domains: definition, power, vCPUs and memory, reading their state and XML."""

from __future__ import annotations

import libvirt

from ovmweb.errors import OperationFailed

from .. import xml as xmlbuild
from ..base import DomainInfo, DomainSpec, PowerState
from .connection import Connection, errors, translate

_STATE = {
    libvirt.VIR_DOMAIN_NOSTATE: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_RUNNING: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_BLOCKED: PowerState.RUNNING,
    libvirt.VIR_DOMAIN_PAUSED: PowerState.PAUSED,
    libvirt.VIR_DOMAIN_SHUTDOWN: PowerState.SHUTTING_DOWN,
    libvirt.VIR_DOMAIN_SHUTOFF: PowerState.SHUTOFF,
    libvirt.VIR_DOMAIN_CRASHED: PowerState.CRASHED,
    libvirt.VIR_DOMAIN_PMSUSPENDED: PowerState.PAUSED,
}


def affects(dom) -> list[int]:
    """The flags to apply a change with, one call each: the live domain and its
    persistent definition (some drivers refuse both flags at once)."""
    if dom.isActive():
        flags = [libvirt.VIR_DOMAIN_AFFECT_LIVE]
        if dom.isPersistent():
            flags.append(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        return flags
    return [libvirt.VIR_DOMAIN_AFFECT_CONFIG]


class DomainsMixin(Connection):
    @staticmethod
    def _info(dom) -> DomainInfo:
        state, _reason = dom.state()
        info = dom.info()
        managed = bool(dom.hasManagedSaveImage(0)) if dom.isPersistent() else False
        power = _STATE.get(state, PowerState.RUNNING)
        if power == PowerState.SHUTOFF and managed:
            power = PowerState.SAVED
        return DomainInfo(
            uuid=dom.UUIDString(),
            name=dom.name(),
            state=power,
            vcpus=info[3],
            memory_mib=info[2] // 1024,
            has_managed_save=managed,
        )

    def define(self, spec: DomainSpec) -> None:
        try:
            document = xmlbuild.domain_xml(spec)
        except ValueError as exc:
            raise OperationFailed(str(exc)) from exc
        with errors(f"defining {spec.name}"):
            self._conn.defineXML(document)

    def undefine(self, uuid: str) -> None:
        dom = self._maybe_domain(uuid)
        if dom is None:
            return
        with errors(f"undefining {uuid}"):
            if dom.isActive():
                dom.destroy()
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                    raise

    def start(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with errors(f"starting {uuid}"):
            if not dom.isActive():
                dom.create()  # restores a managed-save image when there is one

    def shutdown(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with errors(f"shutting down {uuid}"):
            if dom.isActive():
                dom.shutdown()

    def destroy(self, uuid: str) -> None:
        dom = self._maybe_domain(uuid)
        if dom is None:
            return
        try:
            dom.destroy()
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_OPERATION_INVALID, libvirt.VIR_ERR_NO_DOMAIN):
                raise translate(exc, f"destroying {uuid}") from exc

    def reboot(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with errors(f"rebooting {uuid}"):
            dom.reboot(0)

    def suspend(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with errors(f"suspending {uuid}"):
            dom.suspend()

    def resume(self, uuid: str) -> None:
        dom = self._domain(uuid)
        with errors(f"resuming {uuid}"):
            if not dom.isActive() and dom.hasManagedSaveImage(0):
                dom.create()
            else:
                dom.resume()

    def set_vcpus(self, uuid: str, count: int) -> None:
        dom = self._domain(uuid)
        with errors(f"setting vCPUs of {uuid}"):
            for flags in affects(dom):
                dom.setVcpusFlags(count, flags)

    def set_memory(self, uuid: str, memory_mib: int) -> None:
        dom = self._domain(uuid)
        with errors(f"setting memory of {uuid}"):
            for flags in affects(dom):
                dom.setMemoryFlags(memory_mib * 1024, flags)

    def domain_info(self, uuid: str) -> DomainInfo:
        dom = self._domain(uuid)
        with errors(f"reading {uuid}"):
            return self._info(dom)

    def domain_xml(self, uuid: str) -> str:
        dom = self._domain(uuid)
        with errors(f"reading {uuid}"):
            return dom.XMLDesc(0)

    def list_domains(self) -> list[DomainInfo]:
        with errors("listing domains"):
            result = []
            for dom in self._conn.listAllDomains(0):
                try:
                    result.append(self._info(dom))
                except libvirt.libvirtError as exc:
                    # A domain undefined between the listing and the read is simply gone.
                    if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
                        raise
            return result
