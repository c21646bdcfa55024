"""Who may do what: the one table every door consults.

The web pages, the REST API, the admin, the console tickets and WebSockets and
the live-update feed all ask ``authorize(user, action, obj)`` (or its boolean
twin ``can``) and filter their lists through ``scope``; none of them holds a
rule of its own. An action is a name such as ``"vm.start"``; ``RULES`` maps it
to the Django model permissions it needs. An action missing from the table is
a programming error (``UnknownAction``), never a silent allow or deny.

Invariants:
- an anonymous or inactive user may do nothing;
- every permission is checked through ``_holds(user, perm, obj)`` with the
  object the action is about (the VM, the job, the source of a new VM...). Today
  that is a Django model permission and ``obj`` is not looked at; roles per
  server pool will find the pool from ``obj`` there, and only there;
- ``obj=None`` asks "may the user do this to some object of the kind" (a list
  page, a create form, DRF's ``has_permission``); the answer for an object can
  only be narrower, never wider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet
from django.utils.translation import gettext as _

from ovmweb.jobs.models import Event, Job, ObjectLock

from . import models as m


class UnknownAction(LookupError):
    """An action that is not in ``RULES``: a door asked about something nobody decided."""


@dataclass(frozen=True)
class Rule:
    """``perms``: model permissions the user must all hold. ``alternative``: for an object,
    ``alternative(user, obj)`` may grant the action when ``perms_alt`` are not all held
    (a job's owner may abort it). ``then(user, obj)``: a further condition on the object
    (the source of a new VM must be visible)."""

    perms: tuple[str, ...]
    then: Callable | None = None
    perms_alt: tuple[str, ...] = ()
    alternative: Callable | None = None


def _inv(*codenames: str) -> tuple[str, ...]:
    return tuple(f"inventory.{c}" for c in codenames)


# --------------------------------------------------------------- object checks


def _holds(user, perm: str, obj=None) -> bool:
    """The single place a permission is decided. Today a Django model permission
    (superusers hold all); per-pool roles will resolve the server pool of ``obj`` here."""
    return user.has_perm(perm)


def view_action_for(model) -> str | None:
    """The action that shows one object of ``model`` (None for a model no door shows)."""
    return VIEW_ACTIONS.get(model)


def _viewable(user, obj) -> bool:
    action = view_action_for(type(obj))
    return action is not None and can(user, action, obj)


def _source_viewable(user, source) -> bool:
    """The source of a new VM (template, VM, appliance VM, ISO) must be one the user may see."""
    return _viewable(user, source)


def _content_type_viewable(user, content_type_id: int | None) -> bool:
    if content_type_id is None:
        return True  # an object that is gone (a forgotten server): nothing left to hide
    model = ContentType.objects.get_for_id(content_type_id).model_class()
    action = view_action_for(model)
    return action is not None and can(user, action)


def _job_target_viewable(user, job: Job) -> bool:
    return job.user_id == user.pk or _content_type_viewable(user, job.target_type_id)


def _job_owner(user, job: Job) -> bool:
    return job.user_id is not None and job.user_id == user.pk


def _event_object_viewable(user, event: Event) -> bool:
    return _content_type_viewable(user, event.content_type_id)


# ------------------------------------------------------------------ the table

_VM_VIEW = _inv("view_virtualmachine")
_VM_CHANGE = _inv("change_virtualmachine")
# A new VM from any source: the add permission, and the source must be visible.
_VM_CREATE = Rule(_inv("add_virtualmachine"), then=_source_viewable)

RULES: dict[str, Rule] = {
    # Virtual machines. Clone and backup make a new VM from this one: they are creations.
    "vm.view": Rule(_VM_VIEW),
    "vm.create": _VM_CREATE,
    "vm.clone": _VM_CREATE,
    "vm.backup": _VM_CREATE,
    "vm.change": Rule(_VM_CHANGE),
    "vm.delete": Rule(_inv("delete_virtualmachine")),
    **{
        f"vm.{name}": Rule(_VM_CHANGE)
        for name in (
            "start",
            "stop",
            "restart",
            "kill",
            "suspend",
            "resume",
            "migrate",
            "move",
            "export",
            "message",
            "disk_attach",
            "disk_detach",
        )
    },
    # A console is visible to whoever sees the VM; typing into it is changing the VM.
    "vm.console": Rule(_VM_VIEW),
    "vm.console_input": Rule(_VM_CHANGE),
    "vm_message.view": Rule(_inv("view_vmmessage", "view_virtualmachine")),
    # Parts of a VM: their own permission and the VM's.
    "vnic.view": Rule(_inv("view_vnic")),
    "vnic.create": Rule(_inv("add_vnic", "change_virtualmachine")),
    "vnic.change": Rule(_inv("change_vnic", "change_virtualmachine")),
    "vnic.delete": Rule(_inv("delete_vnic", "change_virtualmachine")),
    "customizer.view": Rule(_inv("view_clonecustomizer", "view_virtualmachine")),
    "customizer.create": Rule(_inv("add_clonecustomizer", "change_virtualmachine")),
    "customizer.change": Rule(_inv("change_clonecustomizer", "change_virtualmachine")),
    "customizer.delete": Rule(_inv("delete_clonecustomizer", "change_virtualmachine")),
    "mac_range.view": Rule(_inv("view_macaddressrange")),
    "mac_range.change": Rule(_inv("change_macaddressrange")),
    # Servers. Rediscovering a known server rewrites how it is reached: a change.
    "server.view": Rule(_inv("view_server")),
    "server.discover": Rule(_inv("add_server")),
    "server.scan_host_key": Rule(_inv("add_server")),
    "server.rediscover": Rule(_inv("change_server")),
    "server.change": Rule(_inv("change_server")),
    "server.lock": Rule(_inv("change_server")),
    "server.delete": Rule(_inv("delete_server")),
    # Storage.
    "repository.view": Rule(_inv("view_repository")),
    "repository.create": Rule(_inv("add_repository")),
    "repository.change": Rule(_inv("change_repository")),
    "repository.refresh": Rule(_inv("change_repository")),
    "repository.present": Rule(_inv("change_repository")),
    "repository.delete": Rule(_inv("delete_repository")),
    "disk.view": Rule(_inv("view_virtualdisk")),
    "disk.create": Rule(_inv("add_virtualdisk")),
    "disk.resize": Rule(_inv("change_virtualdisk")),
    "disk.delete": Rule(_inv("delete_virtualdisk")),
    "iso.view": Rule(_inv("view_isofile")),
    "iso.create": Rule(_inv("add_isofile")),
    "iso.delete": Rule(_inv("delete_isofile")),
    "appliance.view": Rule(_inv("view_virtualappliance")),
    "appliance.create": Rule(_inv("add_virtualappliance")),
    "appliance.delete": Rule(_inv("delete_virtualappliance")),
    # Networking.
    "network.view": Rule(_inv("view_network")),
    "network.create": Rule(_inv("add_network")),
    "network.change": Rule(_inv("change_network")),
    "network.delete": Rule(_inv("delete_network")),
    # Server pools and their groups.
    "pool.view": Rule(_inv("view_serverpool")),
    "pool.create": Rule(_inv("add_serverpool")),
    "pool.change": Rule(_inv("change_serverpool")),
    "pool.delete": Rule(_inv("delete_serverpool")),
    "compatibility_group.view": Rule(_inv("view_processorcompatibilitygroup")),
    "compatibility_group.create": Rule(_inv("add_processorcompatibilitygroup")),
    "compatibility_group.change": Rule(_inv("change_processorcompatibilitygroup")),
    "compatibility_group.delete": Rule(_inv("delete_processorcompatibilitygroup")),
    "anti_affinity_group.view": Rule(_inv("view_antiaffinitygroup")),
    "anti_affinity_group.create": Rule(_inv("add_antiaffinitygroup")),
    "anti_affinity_group.change": Rule(_inv("change_antiaffinitygroup")),
    "anti_affinity_group.delete": Rule(_inv("delete_antiaffinitygroup")),
    # Jobs and events: of objects the user may see. A job's owner may abort it.
    "job.view": Rule(("jobs.view_job",), then=_job_target_viewable),
    "job.abort": Rule(
        ("jobs.view_job",), then=_job_target_viewable, perms_alt=("jobs.change_job",), alternative=_job_owner
    ),
    "event.view": Rule(("jobs.view_event",), then=_event_object_viewable),
    "event.acknowledge": Rule(("jobs.view_event", "jobs.change_event"), then=_event_object_viewable),
    "lock.view": Rule(("jobs.view_objectlock",)),
    "console_ticket.view": Rule(("consoles.view_consoleticket",)),
    # The audit trail (ovmweb.audit): sign-ins, role changes, jobs, console sessions of everyone.
    "audit.view": Rule(("audit.view_auditrecord",)),
}

VIEW_ACTIONS: dict = {
    m.VirtualMachine: "vm.view",
    m.VmDiskSlot: "vm.view",
    m.VmMessage: "vm_message.view",
    m.Vnic: "vnic.view",
    m.CloneCustomizer: "customizer.view",
    m.CloneCustomizerDisk: "customizer.view",
    m.CloneCustomizerNetwork: "customizer.view",
    m.MacAddressRange: "mac_range.view",
    m.Server: "server.view",
    m.Repository: "repository.view",
    m.VirtualDisk: "disk.view",
    m.IsoFile: "iso.view",
    m.VirtualAppliance: "appliance.view",
    m.VirtualApplianceVm: "appliance.view",
    m.Network: "network.view",
    m.ServerPool: "pool.view",
    m.ProcessorCompatibilityGroup: "compatibility_group.view",
    m.AntiAffinityGroup: "anti_affinity_group.view",
    Job: "job.view",
    Event: "event.view",
    ObjectLock: "lock.view",
}


# ------------------------------------------------------------------ decisions


def rule_for(action: str) -> Rule:
    try:
        return RULES[action]
    except KeyError:
        raise UnknownAction(action) from None


def can(user, action: str, obj=None) -> bool:
    """Whether ``user`` may do ``action`` (to ``obj``, when given)."""
    rule = rule_for(action)
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    if not all(_holds(user, perm, obj) for perm in rule.perms):
        return False
    if obj is None:
        return True
    if rule.then is not None and not rule.then(user, obj):
        return False
    if rule.alternative is None:
        return True
    return all(_holds(user, perm, obj) for perm in rule.perms_alt) or rule.alternative(user, obj)


def authorize(user, action: str, obj=None) -> None:
    """Raise PermissionDenied unless ``can(user, action, obj)``."""
    if not can(user, action, obj):
        raise PermissionDenied(_("You may not do this (%(action)s).") % {"action": action})


def scope(user, action: str, queryset: QuerySet) -> QuerySet:
    """The rows of ``queryset`` on which ``user`` may do ``action`` (a list shows only these).

    Jobs and events are filtered by what they are about; everything else is all or
    nothing today (model permissions), per server pool later."""
    if not can(user, action):
        return queryset.none()
    model = queryset.model
    if model is Job and action in ("job.view", "job.abort"):
        return queryset.filter(Q(user_id=user.pk) | _content_types_q(user, "target_type"))
    if model is Event and action in ("event.view", "event.acknowledge"):
        return queryset.filter(_content_types_q(user, "content_type"))
    return queryset


def _content_types_q(user, field: str) -> Q:
    """Rows about no object, or about an object of a kind the user may view."""
    visible = [
        ContentType.objects.get_for_model(model).pk
        for model, action in VIEW_ACTIONS.items()
        if model not in (Job, Event) and can(user, action)
    ]
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__in": visible})


def visible_model_labels(user) -> frozenset[str]:
    """``"app_label.model_name"`` of the kinds of object ``user`` may view (the live feed,
    which must not query per message, filters jobs and events by these)."""
    return frozenset(model._meta.label_lower for model, action in VIEW_ACTIONS.items() if can(user, action))


def authorize_vm_create(user, source: dict | None) -> None:
    """``vm.create`` from any source: ``source`` is the service's ``{"kind": ..., <key>: object}``;
    its object (template, VM, appliance VM, ISO), when there is one, must be visible."""
    obj = next((value for value in (source or {}).values() if isinstance(value, Model)), None)
    authorize(user, "vm.create", obj)


def authorize_server_discover(user, *, hostname: str, ssh_port: int, rediscover: bool) -> None:
    """Discovering a new host and port needs ``server.discover``; rediscovering the server
    already there needs ``server.rediscover`` on it. Without ``rediscover`` a known host
    and port is refused by the service (409), never rewritten."""
    existing = m.Server.objects.filter(hostname=hostname, ssh_port=ssh_port).first() if rediscover else None
    if existing is not None:
        authorize(user, "server.rediscover", existing)
    else:
        authorize(user, "server.discover")
