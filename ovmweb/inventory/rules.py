"""The VM rules of the seed (chapter 7) as data and pure checks.

Each rule lives here exactly once; services call these checks before they write.
Checks about the *input* raise ``ValidationError`` with field errors (HTTP 400);
checks about the *current state* of objects raise ``Conflict`` (HTTP 409).
Nothing here writes to the database.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from ovmweb.errors import Conflict

from .choices import (
    PARAVIRTUAL_DOMAIN_TYPES,
    Architecture,
    CloneType,
    DiskBus,
    DomainType,
    OsType,
    RepositoryKind,
    VmStatus,
    VnicModel,
)
from .hot_rules import kernel_version_key
from .services import fetch

if TYPE_CHECKING:  # pragma: no cover
    from .models import Server, ServerPool, VirtualMachine

# --------------------------------------------------------------------------
# 7.1 / 7.2: domain types, installation sources, paravirtual devices
# --------------------------------------------------------------------------


class SourceKind:
    ISO = "iso"
    PVM_URL = "pvm_url"
    TEMPLATE = "template"
    CLONE = "clone"
    APPLIANCE = "appliance"
    NONE = "none"

    ALL = frozenset({ISO, PVM_URL, TEMPLATE, CLONE, APPLIANCE, NONE})


# Table 7.2, "Virtual machine installation sources". PVHVM is an HVM with
# paravirtual drivers, so it installs like an HVM.
INSTALL_SOURCES: dict[str, frozenset[str]] = {
    SourceKind.ISO: frozenset({DomainType.HVM, DomainType.PVHVM}),
    SourceKind.PVM_URL: frozenset({DomainType.PVM}),
    SourceKind.TEMPLATE: frozenset(DomainType.values),
    SourceKind.CLONE: frozenset(DomainType.values),
    SourceKind.APPLIANCE: frozenset(DomainType.values),
    SourceKind.NONE: frozenset(DomainType.values),
}

# The network boot path of a PVM must point at a mounted ISO on NFS, HTTP or FTP.
PVM_URL_SCHEMES = frozenset({"nfs", "http", "https", "ftp"})

# "Due to kernel restrictions in both Oracle Linux 7 and RedHat Enterprise Linux 7,
# it is not possible to run these operating systems as PVM guests."
PVM_REFUSED_OS = frozenset({OsType.ORACLE_LINUX_7, OsType.RHEL_7})


def check_domain_type(*, domain_type: str, os_type: str, pool_architecture: str | None) -> None:
    """Domain type against guest OS and server pool architecture (seed 7.1)."""
    errors: dict[str, list] = {}
    if domain_type == DomainType.PVM and os_type in PVM_REFUSED_OS:
        errors.setdefault("domain_type", []).append(
            _("%(os)s cannot run as a PVM guest (kernel restriction); use HVM or PVHVM.")
            % {"os": OsType(os_type).label}
        )
    if pool_architecture == Architecture.SPARC and domain_type != DomainType.SPARC:
        errors.setdefault("domain_type", []).append(
            _("A SPARC server pool runs only OVM/SPARC virtual machines, not %(type)s.") % {"type": domain_type}
        )
    if pool_architecture is not None and pool_architecture != Architecture.SPARC and domain_type == DomainType.SPARC:
        errors.setdefault("domain_type", []).append(
            _("The OVM/SPARC domain type needs a SPARC server pool; this pool is x86.")
        )
    if errors:
        raise ValidationError(errors)


def check_install_source(*, domain_type: str, kind: str, url: str = "") -> None:
    """Installation source against domain type (seed 7.2, table 7.2)."""
    if kind not in SourceKind.ALL:
        raise ValidationError({"source": [_("Unknown installation source %(kind)r.") % {"kind": kind}]})
    if domain_type not in INSTALL_SOURCES[kind]:
        if kind == SourceKind.ISO:
            msg = _("An ISO file in a repository installs only HVM or PVHVM guests; a PVM needs a mounted ISO URL.")
        else:
            msg = _("A mounted ISO URL (NFS, HTTP or FTP) installs only PVM guests; use an ISO file for %(type)s.") % {
                "type": domain_type
            }
        raise ValidationError({"source": [msg]})
    if kind == SourceKind.PVM_URL:
        check_pvm_url(url)


def check_pvm_url(url: str) -> None:
    parts = urlsplit(url or "")
    if parts.scheme.lower() not in PVM_URL_SCHEMES or not parts.netloc:
        raise ValidationError(
            {"pvm_boot_url": [_("Give the mounted ISO as an nfs://, http://, https:// or ftp:// URL with a host.")]}
        )
    # The host and its addresses pass the rules the start job fetches (or mounts) under;
    # the tree is a directory files are appended to, so no query or fragment.
    fetch.validate_url(url, field="pvm_boot_url", schemes=PVM_URL_SCHEMES, base=True)


def disk_bus_for(domain_type: str) -> str:
    """The bus new disks get: paravirtual for PVHVM/PVM, emulated SATA for HVM (DESIGN.md §4)."""
    return DiskBus.VIRTIO if domain_type in PARAVIRTUAL_DOMAIN_TYPES else DiskBus.SATA


def vnic_model_for(domain_type: str) -> str:
    """The VNIC model by domain type: virtio for PVHVM/PVM, emulated e1000 for HVM."""
    return VnicModel.VIRTIO if domain_type in PARAVIRTUAL_DOMAIN_TYPES else VnicModel.E1000


def check_paravirtual_disks(*, domain_type: str, disk_buses: Iterable[str]) -> None:
    """ "If you want to create a PVHVM or PVM, make sure all disks ... are paravirtual devices" (7.1)."""
    if domain_type in PARAVIRTUAL_DOMAIN_TYPES and any(bus != DiskBus.VIRTIO for bus in disk_buses):
        raise ValidationError(
            {"disks": [_("A %(type)s virtual machine needs paravirtual (virtio) disks.") % {"type": domain_type}]}
        )


# --------------------------------------------------------------------------
# 7.13: virtual CPUs and memory
# --------------------------------------------------------------------------


def check_cpu_memory(*, vcpus: int, max_vcpus: int, memory_mib: int, max_memory_mib: int) -> None:
    errors: dict[str, list] = {}
    if vcpus < 1:
        errors["vcpus"] = [_("A virtual machine needs at least one virtual CPU.")]
    elif vcpus > max_vcpus:
        errors["vcpus"] = [
            _("%(vcpus)d virtual CPUs exceed the maximum of %(max)d.") % {"vcpus": vcpus, "max": max_vcpus}
        ]
    if memory_mib > max_memory_mib:
        errors["memory_mib"] = [
            _("%(mem)d MiB of memory exceed the maximum of %(max)d MiB.") % {"mem": memory_mib, "max": max_memory_mib}
        ]
    if errors:
        raise ValidationError(errors)


# --------------------------------------------------------------------------
# 7.9: runtime parameters that only take effect at the next stop + start
# --------------------------------------------------------------------------

# Everything the hypervisor reads when it creates the domain. vcpus and memory_mib
# are here too: they become pending when they cannot change hot (7.13/7.14).
RUNTIME_FIELDS = frozenset(
    {
        "domain_type",
        "vcpus",
        "max_vcpus",
        "memory_mib",
        "max_memory_mib",
        "huge_pages",
        "keymap",
        "mouse_device",
        "boot_order",
        "cpu_pinning",
        "kernel_args",
        "pvm_boot_url",
    }
)


# --------------------------------------------------------------------------
# 7.15: HugePages
# --------------------------------------------------------------------------


def check_huge_pages(*, domain_type: str, huge_pages: bool) -> None:
    """Decision (documented): HugePages is an on/off setting only for PVM in Oracle VM, and
    deprecated there, so enabling it is refused for PVM. For HVM/PVHVM "you should not attempt
    to enable HugePages" — the guest handles it — so enabling it is refused there as well, and on
    SPARC the setting "has no effect". In short: the flag can never be switched on."""
    if not huge_pages:
        return
    if domain_type == DomainType.PVM:
        msg = _("HugePages is deprecated for PVM guests; change the domain type to PVHVM instead.")
    elif domain_type == DomainType.SPARC:
        msg = _("On SPARC, large pages are always enabled; the setting has no effect.")
    else:
        msg = _("HVM and PVHVM guests use HugePages by default, handled inside the guest; do not enable it here.")
    raise ValidationError({"huge_pages": [msg]})


# --------------------------------------------------------------------------
# 7.7 / 7.12 / 7.16: migration, move, export, clone
# --------------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    return kernel_version_key(version)


def cpu_compatible(source: Server, target: Server) -> bool:
    """Same processor compatibility group, or the same CPU vendor, family and model (7.7, 6.14)."""
    if source.compatibility_group_id and source.compatibility_group_id == target.compatibility_group_id:
        return True
    return bool(source.cpu_vendor) and (source.cpu_vendor, source.cpu_family, source.cpu_model) == (
        target.cpu_vendor,
        target.cpu_family,
        target.cpu_model,
    )


def check_live_migration(*, vm: VirtualMachine, source: Server, target: Server) -> None:
    """Live migration of a running VM from ``source`` to ``target`` (7.7, 7.16)."""
    reason = (
        _live_migration_placement_refusal(vm=vm, source=source, target=target)
        or _live_migration_version_refusal(source=source, target=target)
        or _live_migration_disk_refusal(vm)
    )
    if reason:
        raise Conflict(
            _("Cannot live-migrate '%(vm)s' to %(target)s: %(reason)s")
            % {"vm": vm.name, "target": target.name, "reason": reason}
        )


def _live_migration_placement_refusal(*, vm: VirtualMachine, source: Server, target: Server) -> str | None:
    if source.pk == target.pk:
        return _("it already runs there.")
    if vm.cpu_pinning:
        return _("its virtual CPUs are pinned (hard partitioning); the license forbids live migration.")
    if source.server_pool_id is None or source.server_pool_id != target.server_pool_id:
        return _("live migration stays within one server pool; stop the VM to move it to another pool.")
    if not cpu_compatible(source, target):
        return _("the servers' CPUs are not compatible (vendor, family and model, or compatibility group).")
    return None


def _live_migration_version_refusal(*, source: Server, target: Server) -> str | None:
    for field, label in (("libvirt_version", "libvirt"), ("qemu_version", "QEMU")):
        if _version_key(getattr(target, field)) < _version_key(getattr(source, field)):
            return _("the target runs an older %(what)s (%(t)s) than the source (%(s)s).") % {
                "what": label,
                "t": getattr(target, field),
                "s": getattr(source, field),
            }
    return None


def _live_migration_disk_refusal(vm: VirtualMachine) -> str | None:
    for slot in vm.disk_slots.all():
        if slot.iso_id and slot.iso.repository.kind == RepositoryKind.LOCAL:
            return _("it uses an ISO in a local repository.")
        disk = slot.virtual_disk
        if disk is not None and disk.repository.kind == RepositoryKind.LOCAL and disk.shareable:
            return _("it shares a disk in a local repository with other virtual machines.")
    return None


def needs_storage_migration(vm: VirtualMachine) -> bool:
    """A VM on a local repository cannot run elsewhere without migrating its disks (7.7)."""
    if vm.repository is not None and vm.repository.kind == RepositoryKind.LOCAL:
        return True
    return any(
        s.virtual_disk is not None and s.virtual_disk.repository.kind == RepositoryKind.LOCAL
        for s in vm.disk_slots.all()
    )


def check_storage_migration(*, vm: VirtualMachine, target: Server, target_repository) -> None:
    """A running VM whose disks sit in a local repository migrates live only with its
    disks copied into a repository of the target server (7.7: "a VM on local storage
    may only be migrated while it is running")."""
    if target_repository is None:
        raise Conflict(
            _(
                "Cannot live-migrate '%(vm)s' to %(target)s: its disks are in a local repository and %(target)s has "
                "no repository to receive them."
            )
            % {"vm": vm.name, "target": target.name}
        )
    if target_repository.kind == RepositoryKind.LOCAL and target_repository.server_id != target.pk:
        raise Conflict(
            _("Repository %(repo)s is local to another server than %(target)s.")
            % {"repo": target_repository.name, "target": target.name}
        )
    if (
        target_repository.kind == RepositoryKind.SHARED
        and not target_repository.server_pools.filter(pk=target.server_pool_id).exists()
    ):
        raise Conflict(
            _("Repository %(repo)s is not presented to the pool of %(target)s.")
            % {"repo": target_repository.name, "target": target.name}
        )


# vm_migrate migrates a STOPPED VM cold; a template stays where it is.
COLD_MIGRATION_STATES = frozenset({VmStatus.STOPPED})


def check_cold_migration(*, vm: VirtualMachine, target_pool: ServerPool | None) -> None:
    """Migrating a stopped VM: to another pool, or off any server (unassigned)."""
    if vm.status not in COLD_MIGRATION_STATES:
        raise Conflict(
            _("Migrating '%(vm)s' to another server pool needs it STOPPED; it is %(status)s.")
            % {"vm": vm.name, "status": vm.status}
        )
    if needs_storage_migration(vm):
        raise Conflict(
            _("'%(vm)s' lives in a local repository: move it to a shared repository first.") % {"vm": vm.name}
        )
    if target_pool is not None:
        check_domain_type(domain_type=vm.domain_type, os_type=vm.os_type, pool_architecture=target_pool.architecture)


# The states each non-table operation may start from (7.6, 7.7, 7.10). The checks below
# use them, and the UI reads them to enable its buttons (the checks still decide).
CLONE_STATES = frozenset({VmStatus.STOPPED, VmStatus.TEMPLATE, VmStatus.RUNNING})  # RUNNING: hot clone, thin only
MOVE_STATES = frozenset({VmStatus.STOPPED, VmStatus.TEMPLATE})
EXPORT_STATES = frozenset({VmStatus.STOPPED})
MESSAGE_STATES = frozenset({VmStatus.RUNNING})


def check_move(*, vm: VirtualMachine, target_repositories: Iterable) -> None:
    """Moving changes repositories: only when stopped, never local -> other local with disks (7.7)."""
    if vm.status not in MOVE_STATES:
        raise Conflict(
            _("Cannot move virtual machine '%(vm)s' while it is %(status)s; stop it first.")
            % {"vm": vm.name, "status": vm.status}
        )
    has_disks = any(s.virtual_disk_id for s in vm.disk_slots.all())
    source = vm.repository
    if has_disks and source is not None and source.kind == RepositoryKind.LOCAL:
        for target in target_repositories:
            if target.kind == RepositoryKind.LOCAL and target.pk != source.pk:
                raise Conflict(
                    _(
                        "Cannot move '%(vm)s' with virtual disks from local repository %(src)s to local repository "
                        "%(dst)s; move it through a shared repository."
                    )
                    % {"vm": vm.name, "src": source.name, "dst": target.name}
                )


# 7.7 "Exporting Virtual Machines": up to four exports run at once, the others wait.
MAX_CONCURRENT_EXPORTS = 4


def check_export(vm: VirtualMachine) -> None:
    """Only a stopped VM that is in a server pool or unassigned can be exported (7.7);
    a template (TEMPLATE, kept in a repository rather than a pool) or a VM that runs,
    is suspended or is changing state cannot. Exporting again is allowed: every export
    is a new file."""
    if vm.status not in EXPORT_STATES:
        raise Conflict(
            _("Only a STOPPED virtual machine can be exported; '%(vm)s' is %(status)s.")
            % {"vm": vm.name, "status": vm.status}
        )


def check_clone(*, vm: VirtualMachine, clone_types: Iterable[str]) -> None:
    """A cold clone from a stopped VM or template always works; a hot clone (running VM)
    only when every disk is a thin clone (7.6). Suspended or transitional VMs are refused."""
    if vm.status in (VmStatus.STOPPED, VmStatus.TEMPLATE):
        return
    if vm.status not in CLONE_STATES:
        raise Conflict(
            _("Cannot clone virtual machine '%(vm)s' while it is %(status)s.") % {"vm": vm.name, "status": vm.status}
        )
    if any(t != CloneType.THIN for t in clone_types):
        raise Conflict(
            _(
                "A hot clone of running virtual machine '%(vm)s' needs a thin clone of every disk (seed 7.6): "
                "its disks are copied as they are at one instant while it keeps running, and that copy "
                "is always a space-saving one. Stop it for a sparse or non-sparse copy."
            )
            % {"vm": vm.name}
        )


# --------------------------------------------------------------------------
# 7.4: MAC addresses
# --------------------------------------------------------------------------

_MAC_RE = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


def int_to_mac(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def normalize_mac(mac: str, *, field: str = "mac") -> str:
    """Lower-case, colon-separated; refuses malformed and multicast addresses."""
    value = (mac or "").strip().lower().replace("-", ":")
    if not _MAC_RE.match(value):
        raise ValidationError({field: [_("%(mac)r is not a MAC address like 00:21:f6:00:00:01.") % {"mac": mac}]})
    if int(value[:2], 16) & 1:
        raise ValidationError(
            {field: [_("%(mac)s is a multicast address; a VNIC needs a unicast MAC.") % {"mac": value}]}
        )
    return value


def check_mac_range(start: str, end: str) -> tuple[str, str]:
    errors: dict[str, list] = {}
    values = {}
    for field, mac in (("start", start), ("end", end)):
        try:
            values[field] = normalize_mac(mac, field=field)
        except ValidationError as exc:
            errors.update(exc.message_dict)
    if not errors and mac_to_int(values["start"]) > mac_to_int(values["end"]):
        errors["end"] = [
            _("The range ends before it starts (%(s)s > %(e)s).") % {"s": values["start"], "e": values["end"]}
        ]
    if errors:
        raise ValidationError(errors)
    return values["start"], values["end"]


# --------------------------------------------------------------------------
# 7.10: messages
# --------------------------------------------------------------------------

MESSAGE_KEY_MAX_BYTES = 256
# Letters, digits, dot, dash, underscore; not starting with a separator. The key travels
# in a space-separated, one-line protocol (``SET <rid> <key> <value>``) and guest-side
# tools may use it as a name: a space, a newline or ``../`` must never get there.
MESSAGE_KEY_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MESSAGE_VALUE_MAX_BYTES_LOGGED = 1024
MESSAGE_VALUE_MAX_BYTES_UNLOGGED = 8192
HIDDEN_VALUE = "********"


def check_message_target(vm: VirtualMachine) -> None:
    if vm.status not in MESSAGE_STATES:
        raise Conflict(
            _("Messages reach only a RUNNING virtual machine; '%(vm)s' is %(status)s.")
            % {"vm": vm.name, "status": vm.status}
        )


def check_message(*, key: str, value: str, log: bool) -> None:
    errors: dict[str, list] = {}
    key_bytes = len((key or "").encode("utf-8"))
    if key_bytes == 0:
        errors["key"] = [_("A message needs a key.")]
    elif key_bytes > MESSAGE_KEY_MAX_BYTES:
        errors["key"] = [_("The key is %(n)d bytes; at most %(max)d.") % {"n": key_bytes, "max": MESSAGE_KEY_MAX_BYTES}]
    elif not MESSAGE_KEY_PATTERN.fullmatch(key):
        errors["key"] = [
            _("A key is letters, digits, '.', '-' and '_', starting with a letter or digit (e.g. com.oracle.linux.x).")
        ]
    limit = MESSAGE_VALUE_MAX_BYTES_LOGGED if log else MESSAGE_VALUE_MAX_BYTES_UNLOGGED
    value_bytes = len((value or "").encode("utf-8"))
    if value_bytes > limit:
        errors["value"] = [
            _("The value is %(n)d bytes; at most %(max)d when %(how)s.")
            % {"n": value_bytes, "max": limit, "how": _("logged") if log else _("not logged")}
        ]
    if errors:
        raise ValidationError(errors)
