"""Disk leases (libvirt's lockd lock manager with virtlockd): which disk a refused start
found held by a guest elsewhere.

libvirt names a leased disk in the lockspace by the SHA-256 of its path when
``file_lockspace_dir`` is set (by the path itself otherwise), and QEMU's own image lock
(same machine) names the file: both are mapped back to the VM's disk here, so the event
says which disk is in use, not a hash."""

from __future__ import annotations

import hashlib
import re

from django.utils.translation import gettext as _

from ..choices import DiskSlotKind
from ..models import VirtualMachine
from .vm_devices import disk_path

# libvirt: "resource busy: Lockspace resource '<sha256 or path>' is locked";
# QEMU's image lock: 'Failed to get "write" lock' ... "Is another process using the image [<path>]?".
_LOCKSPACE = re.compile(r"Lockspace resource '([^']+)' is locked")
_QEMU_LOCK = re.compile(r'Failed to get "write" lock')


def is_lease_refusal(error: str) -> bool:
    return bool(_LOCKSPACE.search(error) or _QEMU_LOCK.search(error))


def held_disks(*, vm: VirtualMachine, error: str) -> list[str] | None:
    """None if ``error`` is not a lease refusal; else the names (and paths) of ``vm``'s disks it
    names as held: every writable disk of the VM when the refusal names none of them."""
    if not is_lease_refusal(error):
        return None
    held = set(_LOCKSPACE.findall(error))
    named, writable = [], []
    slots = vm.disk_slots.filter(kind=DiskSlotKind.DISK).select_related("virtual_disk__repository")
    for slot in slots.order_by("slot"):
        disk = slot.virtual_disk
        if disk is None or disk.shareable:
            continue
        path = disk_path(disk)
        label = f"{disk.name} ({path})"
        writable.append(label)
        if path in held or hashlib.sha256(path.encode()).hexdigest() in held or path in error:
            named.append(label)
    return named or writable


def lease_refusal_text(*, vm: VirtualMachine, error: str) -> str | None:
    """The start failure as an administrator reads it, or None if it was no lease refusal."""
    disks = held_disks(vm=vm, error=error)
    if disks is None:
        return None
    return _(
        "disk %(disks)s is in use by a running guest on another server (its lease is held); "
        "it cannot run twice. (%(error)s)"
    ) % {"disks": ", ".join(disks) or _("(unknown)"), "error": error}


__all__ = ["held_disks", "is_lease_refusal", "lease_refusal_text"]
