"""Seed 7.14, "Limitations for Hot-Changing Virtual Components Within A Virtual
Machine", as data and pure checks: which component of a running guest may change,
per guest operating system. Like ``rules.py``, nothing here writes; the services
call these checks before they change a running VM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.utils.translation import gettext_lazy as _

from ovmweb.errors import Conflict

from .choices import PARAVIRTUAL_DOMAIN_TYPES, OsType, VmStatus

if TYPE_CHECKING:  # pragma: no cover
    from .models import VirtualMachine


# --------------------------------------------------------------------------
# 7.14: hot changes per guest OS
# --------------------------------------------------------------------------


class Hot:
    """Components that may change while the guest runs."""

    VCPU = "vcpu"
    MEMORY = "memory"
    DISK = "disk"
    VNIC = "vnic"
    CDROM_REMOVE = "cdrom_remove"


# The first Oracle Linux kernel shown to hot-add and hot-remove vCPUs: UEK2 QU5.
OL_HOT_VCPU_MIN_KERNEL = "2.6.39-400.211.1"


@dataclass(frozen=True)
class HotRule:
    allowed: bool | str  # True, False, or the name of a condition below
    reason: str = ""


_OL = {
    Hot.VCPU: HotRule("uek_kernel", _("hot vCPU changes need kernel UEK2 2.6.39-400.211.1 or later in the guest")),
    Hot.MEMORY: HotRule("pv_domain", _("hot memory changes need a PVM or PVHVM guest")),
    Hot.DISK: HotRule(True),
    Hot.VNIC: HotRule(True),
    Hot.CDROM_REMOVE: HotRule(True),
}
_SOLARIS_X86_NO_CPU_RAM = _("Oracle Solaris on x86 cannot hot-add or hot-remove virtual CPUs or memory")
_WINDOWS_PV = _("Windows needs the Oracle VM Paravirtual Drivers for hot disk and VNIC changes")
_WINDOWS_NO_CPU_RAM = _("Windows cannot hot-add virtual CPUs or memory")

# Seed 7.14 as data: per guest OS, per component, allowed / refused / conditional.
HOT_CHANGE_MATRIX: dict[str, dict[str, HotRule]] = {
    OsType.ORACLE_LINUX_5: _OL,
    OsType.ORACLE_LINUX_6: _OL,
    OsType.ORACLE_LINUX_7: _OL,
    OsType.SOLARIS_SPARC: {c: HotRule(True) for c in (Hot.VCPU, Hot.MEMORY, Hot.DISK, Hot.VNIC, Hot.CDROM_REMOVE)},
    OsType.SOLARIS_X86: {
        Hot.VCPU: HotRule(False, _SOLARIS_X86_NO_CPU_RAM),
        Hot.MEMORY: HotRule(False, _SOLARIS_X86_NO_CPU_RAM),
        Hot.DISK: HotRule("solaris11", _("hot disk changes need Oracle Solaris 11 or later")),
        Hot.VNIC: HotRule(True),
        Hot.CDROM_REMOVE: HotRule(False, _("Oracle Solaris on x86 cannot hot-remove a virtual CD-ROM")),
    },
    OsType.WINDOWS: {
        Hot.VCPU: HotRule(False, _WINDOWS_NO_CPU_RAM),
        Hot.MEMORY: HotRule(False, _WINDOWS_NO_CPU_RAM),
        Hot.DISK: HotRule("pv_drivers", _WINDOWS_PV),
        Hot.VNIC: HotRule("pv_drivers", _WINDOWS_PV),
        Hot.CDROM_REMOVE: HotRule("pv_drivers", _WINDOWS_PV),
    },
}
# Guests the seed says nothing about: the safe answer is "stop the VM first"
# for CPU and memory, while disks, VNICs and CD-ROMs hot-plug on any modern kernel.
_UNKNOWN_OS = {
    Hot.VCPU: HotRule(False, _("the guest OS is not known to support hot vCPU changes")),
    Hot.MEMORY: HotRule(False, _("the guest OS is not known to support hot memory changes")),
    Hot.DISK: HotRule(True),
    Hot.VNIC: HotRule(True),
    Hot.CDROM_REMOVE: HotRule(True),
}


def kernel_version_key(release: str) -> tuple[int, ...]:
    """Numeric key of a kernel release: "2.6.39-400.211.1.el6uek" -> (2, 6, 39, 400, 211, 1, 6).

    Compared as integers, so 2.6.39-400.99 < 2.6.39-400.211 (not as strings)."""
    return tuple(int(part) for part in re.findall(r"\d+", release or ""))


def _uek_supports_hot_vcpu(release: str) -> bool:
    if not release:
        return False
    key = kernel_version_key(release)
    threshold = kernel_version_key(OL_HOT_VCPU_MIN_KERNEL)
    # Only the version and release numbers count; trailing distro tags (el6uek) do not.
    return key[: len(threshold)] >= threshold


def _solaris_11_or_later(release: str) -> bool:
    # Solaris reports its release as 5.10 (Solaris 10) or 5.11 / 11.x.
    key = kernel_version_key(release)
    if not key:
        return False
    if key[0] == 5 and len(key) > 1:
        return key[1] >= 11
    return key[0] >= 11


def hot_change_refusal(
    *, os_type: str, component: str, domain_type: str, guest_kernel: str = "", pv_drivers: bool = False
) -> str | None:
    """Why ``component`` may not change while this guest runs, or None if it may (seed 7.14)."""
    rule = HOT_CHANGE_MATRIX.get(os_type, _UNKNOWN_OS)[component]
    allowed = rule.allowed
    if allowed == "uek_kernel":
        allowed = _uek_supports_hot_vcpu(guest_kernel)
    elif allowed == "pv_domain":
        allowed = domain_type in PARAVIRTUAL_DOMAIN_TYPES
    elif allowed == "solaris11":
        allowed = _solaris_11_or_later(guest_kernel)
    elif allowed == "pv_drivers":
        allowed = pv_drivers
    return None if allowed else str(rule.reason)


def vm_hot_change_refusal(vm: VirtualMachine, component: str) -> str | None:
    return hot_change_refusal(
        os_type=vm.os_type,
        component=component,
        domain_type=vm.domain_type,
        guest_kernel=vm.guest_kernel,
        pv_drivers=vm.pv_drivers_installed,
    )


def check_device_change(vm: VirtualMachine, component: str) -> None:
    """Adding or removing a disk, VNIC or CD-ROM: refused while SUSPENDED (7.4) and,
    while the guest runs, where its OS cannot hot-plug it (7.14)."""
    if vm.status == VmStatus.SUSPENDED:
        raise Conflict(
            _("Cannot add or remove devices of virtual machine '%(vm)s' while it is SUSPENDED.") % {"vm": vm.name}
        )
    if vm.status in (VmStatus.STARTING, VmStatus.STOPPING):
        raise Conflict(
            _("Cannot add or remove devices of virtual machine '%(vm)s' while it is %(status)s.")
            % {"vm": vm.name, "status": vm.status}
        )
    if vm.status == VmStatus.RUNNING:
        reason = vm_hot_change_refusal(vm, component)
        if reason:
            raise Conflict(
                _("Cannot change this device of running virtual machine '%(vm)s': %(reason)s. Stop it first.")
                % {"vm": vm.name, "reason": reason}
            )
