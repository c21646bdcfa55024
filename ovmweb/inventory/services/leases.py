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
from ..models import Server, VirtualMachine
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


# The QEMU processes of this server: those in the shell's own network namespace (libvirt
# gives each QEMU a private mount namespace, not a network one). On a real server that is
# every QEMU; on servers sharing one kernel (scripts/two-servers.sh) only its own. Builtins
# only in the loop: no fork per process.
_GUESTS_SCRIPT = r"""me=$(readlink /proc/self/ns/net)
for d in /proc/[0-9]*; do
  read -r c <"$d/comm" 2>/dev/null || continue
  case $c in qemu*|kvm*) ;; *) continue ;; esac
  [ "$(readlink "$d/ns/net" 2>/dev/null)" = "$me" ] || continue
  tr '\0' ' ' <"$d/cmdline" 2>/dev/null; echo
done"""
_UUID_ARG = re.compile(r"-uuid ([0-9a-fA-F-]{36})")
PROBE_TIMEOUT = 5.0


def running_guests(*, server: Server) -> set[str] | None:
    """The UUIDs of the guests whose QEMU process runs on ``server``, asked over SSH (or on
    this machine for the ``local`` transport) without libvirt: what HA trusts when the
    server's libvirtd does not answer. None when the server itself cannot be asked."""
    import subprocess  # nosec B404  # a constant script, no input from a request

    from ovmweb.errors import ConnectionFailed, HostKeyMismatch

    from .server_files import is_local

    if is_local(server):
        try:
            out = subprocess.run(  # nosec B603 B607  # constant argv
                ["sh", "-c", _GUESTS_SCRIPT], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            return None
        return {m.lower() for m in _UUID_ARG.findall(out)}
    from ovmweb.tunnels import credentials, ssh

    secret = credentials.decrypt_credentials(server.credentials_encrypted) if server.credentials_encrypted else {}
    try:
        client = ssh.connect(
            hostname=server.hostname,
            port=server.ssh_port,
            username=server.ssh_user,
            password=secret.get("password"),
            private_key=secret.get("private_key"),
            expected_fingerprint=server.host_key_fingerprint,
            timeout=PROBE_TIMEOUT,
        )
    except (ConnectionFailed, HostKeyMismatch):
        return None
    try:
        status, out, _err = ssh.run(client, _GUESTS_SCRIPT, timeout=PROBE_TIMEOUT * 2)
    except ConnectionFailed:
        return None
    finally:
        client.close()
    return {m.lower() for m in _UUID_ARG.findall(out)} if status == 0 else None


__all__ = ["held_disks", "is_lease_refusal", "lease_refusal_text", "running_guests"]
