"""Who may do what: the one table every door consults.

The web pages, the REST API, the admin, the console tickets and WebSockets and
the live-update feed all ask ``authorize(user, action, obj)`` (or its boolean
twin ``can``) and filter their lists through ``scope``; none of them holds a
rule of its own. An action is a name such as ``"vm.start"``; ``RULES`` maps it
to the Django model permissions it needs. An action missing from the table is
a programming error (``UnknownAction``), never a silent allow or deny.

Invariants:
- an anonymous or inactive user may do nothing;
- an action is granted by Django model permissions (``_holds``; they count on the
  whole estate: a user with ``change_virtualmachine`` acts as an estate-wide role
  for that action, and superusers hold all) or by a role on the object's server pool
  (``ovmweb.inventory.roles``: Administrator, Operator, Viewer, per pool or estate-wide);
- a user who may not view an object gets 404 for it, never 403 (``authorize``, and the
  doors look objects up through ``scope`` of the view action): names don't leak;
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
from django.http import Http404
from django.utils.translation import gettext as _

from ovmweb.jobs.models import Event, Job, ObjectLock

from . import models as m
from . import roles


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
    """A Django model permission (superusers hold all): estate-wide, ``obj`` is not looked at.
    Roles per pool are asked next to it, in ``can``."""
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
    """By model permissions only: a role reaches a job or an event through its pool (roles.py)."""
    if content_type_id is None:
        return True  # an object that is gone (a forgotten server): nothing left to hide
    model = ContentType.objects.get_for_id(content_type_id).model_class()
    action = view_action_for(model)
    return action is not None and _by_model_perms(user, rule_for(action))


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
    # Who holds which role on a pool: read with the pool, changed by its Administrators.
    "pool.roles": Rule(("accounts.add_roleassignment", "accounts.delete_roleassignment")),
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


def _by_model_perms(user, rule: Rule, obj=None) -> bool:
    if not all(_holds(user, perm, obj) for perm in rule.perms):
        return False
    if obj is None:
        return True
    if rule.then is not None and not rule.then(user, obj):
        return False
    if rule.alternative is None:
        return True
    return all(_holds(user, perm, obj) for perm in rule.perms_alt) or rule.alternative(user, obj)


def _by_role(user, action: str, rule: Rule, obj=None) -> bool:
    if not roles.allows(user, action, obj):
        return False
    # The source of a new VM must be visible to the role too; jobs and events were placed by pool.
    return obj is None or rule.then is None or rule.then is not _source_viewable or rule.then(user, obj)


def can(user, action: str, obj=None) -> bool:
    """Whether ``user`` may do ``action`` (to ``obj``, when given): by model permission or by role."""
    rule = rule_for(action)
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    return _by_model_perms(user, rule, obj) or _by_role(user, action, rule, obj)


def visible(user, obj) -> bool:
    """Whether ``user`` may view ``obj`` (else its doors answer 404)."""
    return _viewable(user, obj)


def authorize(user, action: str, obj=None) -> None:
    """Raise PermissionDenied unless ``can(user, action, obj)``; Http404 instead when the user
    may not even view ``obj`` (a user without a role on its pool learns nothing of it)."""
    if not can(user, action, obj):
        # (The object of a creation is its source: refused as before, 403.)
        about_obj = obj is not None and rule_for(action).then is not _source_viewable
        if about_obj and view_action_for(type(obj)) is not None and not _viewable(user, obj):
            raise Http404(_("No such object."))
        raise PermissionDenied(_("You may not do this (%(action)s).") % {"action": action})


def scope(user, action: str, queryset: QuerySet) -> QuerySet:
    """The rows of ``queryset`` on which ``user`` may do ``action`` (a list shows only these),
    filtered inside the query itself: by model permissions (all rows; jobs and events by what
    they are about) or by the pools of the user's roles (``roles.rows_q``), whichever is wider."""
    if not can(user, action):
        return queryset.none()
    model = queryset.model
    by_perms = _model_perms_q(user, action, model)
    if by_perms is not None and not by_perms:
        return queryset  # Q(): every row
    by_role = roles.rows_q(user, action, model)
    if by_role is not None and not by_role:
        return queryset
    parts = [q for q in (by_perms, by_role) if q is not None]
    if not parts:
        return queryset.none()
    combined = parts[0] if len(parts) == 1 else parts[0] | parts[1]
    return queryset.filter(combined)


def _model_perms_q(user, action: str, model) -> Q | None:
    if not _by_model_perms(user, rule_for(action)):
        return None
    if model is Job and action in ("job.view", "job.abort"):
        return Q(user_id=user.pk) | _content_types_q(user, "target_type")
    if model is Event and action in ("event.view", "event.acknowledge"):
        return _content_types_q(user, "content_type")
    return Q()


def _content_types_q(user, field: str) -> Q:
    """Rows about no object, or about an object of a kind the user may view."""
    visible = [
        ContentType.objects.get_for_model(model).pk
        for model, action in VIEW_ACTIONS.items()
        if model not in (Job, Event) and _by_model_perms(user, rule_for(action))
    ]
    return Q(**{f"{field}__isnull": True}) | Q(**{f"{field}__in": visible})


def everywhere(user, action: str) -> bool:
    """Whether ``user`` may do ``action`` to every object of its kind (a model permission or an
    estate-wide role), not only to those of some pools."""
    if user is None or not getattr(user, "is_authenticated", False) or not getattr(user, "is_active", True):
        return False
    return _by_model_perms(user, rule_for(action)) or roles.where(user, action)[0]


def role_pools(user, action: str) -> frozenset[int]:
    """The pools on which a role of ``user`` grants ``action`` (the live feed's per-pool filter)."""
    return roles.where(user, action)[1]


def pools_of_label(label: str, object_id) -> frozenset[int]:
    return roles.pools_of_label(label, object_id)


def visible_model_labels(user) -> frozenset[str]:
    """``"app_label.model_name"`` of the kinds of object ``user`` may view everywhere (the live
    feed, which must not query per message, filters jobs and events by these; a role on some
    pools is filtered by pool, ``role_pools``)."""
    return frozenset(model._meta.label_lower for model, action in VIEW_ACTIONS.items() if everywhere(user, action))


def authorize_vm_create(user, source: dict | None) -> None:
    """``vm.create`` from any source: ``source`` is the service's ``{"kind": ..., <key>: object}``;
    its object (template, VM, appliance VM, ISO), when there is one, must be visible."""
    obj = next((value for value in (source or {}).values() if isinstance(value, Model)), None)
    authorize(user, "vm.create", obj)


def authorize_vm_target_pool(user, action: str, pool) -> None:
    """A VM sent to another server pool (cold migration): the user needs ``action`` on the
    target pool too (a role there, or the model permission); a pool the user may not see is
    not found (404)."""
    if pool is not None:
        authorize(user, action, pool)


def authorize_server_discover(user, *, hostname: str, ssh_port: int, rediscover: bool) -> None:
    """Discovering a new host and port needs ``server.discover``; rediscovering the server
    already there needs ``server.rediscover`` on it. Without ``rediscover`` a known host
    and port is refused by the service (409), never rewritten."""
    existing = m.Server.objects.filter(hostname=hostname, ssh_port=ssh_port).first() if rediscover else None
    if existing is not None:
        authorize(user, "server.rediscover", existing)
    else:
        authorize(user, "server.discover")
