"""The checks every VM service shares: a configuration against the rules (``rules.py``)
and whether a server pool sees a repository (7.6, 7.7). Below ``vms``, ``vm_copies``
and ``vm_devices``, which import it; it imports none of them."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from ovmweb.errors import Conflict

from .. import rules
from ..choices import DomainType, RepositoryKind
from ..models import (
    ServerPool,
)

# Editable through vm_update. Placement fields (server_pool, server, repository)
# change only through migrate and move; status only through actions.
PLAIN_FIELDS = frozenset(
    {"name", "description", "os_type", "guest_kernel", "pv_drivers_installed", "ha_enabled", "origin"}
)


UPDATABLE_FIELDS = PLAIN_FIELDS | rules.RUNTIME_FIELDS


def check_config(*, cfg: dict[str, Any], pool: ServerPool | None, disk_buses: list[str]) -> None:
    """Every rule about a VM configuration, on the configuration it will boot with."""
    errors: dict[str, list] = {}
    for check in (
        lambda: rules.check_cpu_memory(
            vcpus=cfg["vcpus"],
            max_vcpus=cfg["max_vcpus"],
            memory_mib=cfg["memory_mib"],
            max_memory_mib=cfg["max_memory_mib"],
        ),
        lambda: rules.check_domain_type(
            domain_type=cfg["domain_type"],
            os_type=cfg["os_type"],
            pool_architecture=pool.architecture if pool else None,
        ),
        lambda: rules.check_huge_pages(domain_type=cfg["domain_type"], huge_pages=cfg["huge_pages"]),
        lambda: rules.check_paravirtual_disks(domain_type=cfg["domain_type"], disk_buses=disk_buses),
        lambda: (
            rules.check_pvm_url(cfg["pvm_boot_url"])
            if cfg["domain_type"] == DomainType.PVM and cfg["pvm_boot_url"]
            else None
        ),
    ):
        try:
            check()
        except ValidationError as exc:
            for field, msgs in exc.message_dict.items():
                errors.setdefault(field, []).extend(msgs)
    if errors:
        raise ValidationError(errors)


def repository_reachable(repo, pool: ServerPool | None) -> bool:
    if pool is None:
        return True
    if repo.kind == RepositoryKind.LOCAL:
        return repo.server is not None and repo.server.server_pool_id == pool.pk
    return repo.server_pools.filter(pk=pool.pk).exists()


def ensure_storage_reachable(*, repositories, pool: ServerPool | None) -> None:
    """A clone or a move places the VM's files in ``repositories``; the server pool it will
    run in must see each of them (7.6/7.7). Checked when the job is requested: a clone
    customizer was checked against the VM's pool when it was saved, and the VM may have
    changed pools since, or the clone may go to another pool."""
    for repo in dict.fromkeys(repositories):
        if not repository_reachable(repo, pool):
            raise Conflict(
                _("Repository %(repo)s is not seen by server pool %(pool)s.") % {"repo": repo.name, "pool": pool.name}
            )
