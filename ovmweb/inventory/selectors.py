"""Reads of the inventory, filtered by permission. Views, the API and consumers share these."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q, QuerySet
from django.http import Http404

from . import permissions
from .models import VirtualMachine, VmDiskSlot, Vnic

ORDERINGS = frozenset({"name", "-name", "status", "-status", "created_at", "-created_at", "id", "-id"})


def _action(action: str) -> str:
    """``"start"`` -> ``"vm.start"``: access_vm takes the VM actions of ``permissions.RULES``."""
    return action if "." in action else f"vm.{action}"


def vm_queryset() -> QuerySet[VirtualMachine]:
    """VMs with everything a list or detail shows, in a fixed number of queries
    (1 + one per prefetch) whatever the number of VMs."""
    return VirtualMachine.objects.select_related("server_pool", "server", "repository").prefetch_related(
        Prefetch(
            "disk_slots",
            queryset=VmDiskSlot.objects.select_related("virtual_disk", "virtual_disk__repository", "iso").order_by(
                "slot"
            ),
        ),
        Prefetch("vnics", queryset=Vnic.objects.select_related("network").order_by("position", "id")),
    )


def vm_list(
    *, user, search: str | None = None, pool=None, server=None, ordering: str | None = None
) -> QuerySet[VirtualMachine]:
    qs = permissions.scope(user, "vm.view", vm_queryset())
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    if pool is not None:
        qs = qs.filter(server_pool=pool)
    if server is not None:
        qs = qs.filter(server=server)
    if ordering in ORDERINGS:
        # id breaks ties so that pages never overlap.
        qs = qs.order_by(ordering, "id")
    else:
        qs = qs.order_by("name", "id")
    return qs


def access_vm(user, vm_id, action: str = "view") -> VirtualMachine:
    """The VM if ``user`` may do ``action`` on it; PermissionDenied or Http404 otherwise.

    ``action`` is a VM action of ``ovmweb.inventory.permissions`` ("view", "start",
    "delete", "clone"... or its full name "vm.start"); the rule is decided there."""
    action = _action(action)
    if user is None or not getattr(user, "is_authenticated", False):
        raise PermissionDenied("Authentication required.")
    # Refuse before the lookup on what the user may do to no VM at all: a stranger
    # learns nothing about which ids exist.
    permissions.authorize(user, action)
    try:
        vm = vm_queryset().get(pk=int(vm_id))
    except (VirtualMachine.DoesNotExist, ValueError, TypeError):
        raise Http404("No such virtual machine.") from None
    permissions.authorize(user, action, vm)
    return vm
