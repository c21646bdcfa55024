"""Roles per server pool: which actions of ``ovmweb.inventory.permissions`` a role grants, and
on which objects. ``permissions`` asks this module (``allows``, ``rows_q``) next to the Django
model permissions; no door asks it directly.

The predicates are django-rules predicates over ``RoleAssignment`` rows (ovmweb/accounts):
no table per object. A role is held on one server pool or, ``server_pool`` null, on the
whole estate.

Invariants:
- an object belongs to the pool ``pools_of`` names: a pool itself; a server, VM or
  anti-affinity group its ``server_pool``; a VM's disk slots, VNICs, clone customizers and
  messages the VM's pool; a virtual disk the pools of the VMs it is attached to; a job or an
  event the pool of the object it is about. Anything else (repositories, ISOs, appliances,
  networks, unattached disks, unassigned VMs and servers, objects of no pool) belongs to no
  pool: only an estate-wide role reaches it;
- a role on a pool grants only actions on existing objects of that pool (``POOL_ACTIONS``);
  making new VMs, pools, servers, repositories, networks needs an estate-wide Administrator
  (``ESTATE_ACTIONS``), who may do every action of the permissions table;
- what a user holds is read once per user object (``_held``), as Django caches permissions.
"""

from __future__ import annotations

import rules
from django.contrib.contenttypes.models import ContentType
from django.db.models import Q

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.jobs.models import Event, Job

from . import models as m

_VIEW = frozenset(
    {
        "vm.view",
        "vm.console",
        "vm_message.view",
        "vnic.view",
        "customizer.view",
        "disk.view",
        "server.view",
        "pool.view",
        "anti_affinity_group.view",
        "job.view",
        "event.view",
    }
)
# Power actions and consoles (typing included), aborting jobs and acknowledging events.
_OPERATE = _VIEW | {
    "vm.start",
    "vm.stop",
    "vm.restart",
    "vm.kill",
    "vm.suspend",
    "vm.resume",
    "vm.console_input",
    "job.abort",
    "event.acknowledge",
}
_ADMINISTER = _OPERATE | {
    "vm.change",
    "vm.delete",
    "vm.migrate",
    "vm.move",
    "vm.export",
    "vm.message",
    "vm.disk_attach",
    "vm.disk_detach",
    "vnic.create",
    "vnic.change",
    "vnic.delete",
    "customizer.create",
    "customizer.change",
    "customizer.delete",
    "disk.resize",
    "server.change",
    "server.lock",
    "server.rediscover",
    "pool.change",
    "pool.roles",
    "anti_affinity_group.change",
    "anti_affinity_group.delete",
}
POOL_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset(_VIEW),
    Role.OPERATOR: frozenset(_OPERATE),
    Role.ADMINISTRATOR: frozenset(_ADMINISTER),
}
# Estate-wide, a Viewer also reads what belongs to no pool; an Administrator may do everything
# (the permissions table's every action: ``ALL`` is filled in by ``permissions``).
ESTATE_EXTRA_VIEW = frozenset(
    {
        "repository.view",
        "iso.view",
        "appliance.view",
        "network.view",
        "mac_range.view",
        "compatibility_group.view",
        "lock.view",
    }
)
ALL = "*"
ESTATE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: POOL_ACTIONS[Role.VIEWER] | ESTATE_EXTRA_VIEW,
    Role.OPERATOR: POOL_ACTIONS[Role.OPERATOR] | ESTATE_EXTRA_VIEW,
    Role.ADMINISTRATOR: frozenset({ALL}),
}

# model -> the lookup from a row to its server pool's id (the order of ``pools_of``).
POOL_PATHS: dict = {
    m.ServerPool: "pk",
    m.Server: "server_pool",
    m.VirtualMachine: "server_pool",
    m.AntiAffinityGroup: "server_pool",
    m.VmDiskSlot: "vm__server_pool",
    m.Vnic: "vm__server_pool",
    m.CloneCustomizer: "vm__server_pool",
    m.VmMessage: "vm__server_pool",
    m.CloneCustomizerDisk: "customizer__vm__server_pool",
    m.CloneCustomizerNetwork: "customizer__vm__server_pool",
    m.VirtualDisk: "slots__vm__server_pool",
}
# Paths that cross a one-to-many relation: filtered through a subquery, so rows never repeat.
_MULTI = frozenset({m.VirtualDisk})


def _grants(action: str, role: str, pool_id) -> bool:
    table = ESTATE_ACTIONS if pool_id is None else POOL_ACTIONS
    actions = table.get(role, frozenset())
    return ALL in actions or action in actions


def _held(user) -> tuple[tuple[str, int | None], ...]:
    """(role, pool id or None) of every assignment of the user and of the user's groups."""
    cached = getattr(user, "_ovm_roles", None)
    if cached is None:
        rows = RoleAssignment.objects.filter(Q(user_id=user.pk) | Q(group__user__id=user.pk))
        cached = tuple(rows.order_by().values_list("role", "server_pool_id").distinct())
        user._ovm_roles = cached
    return cached


def forget(user) -> None:
    """Drop what ``_held`` read (after a grant or a removal on this very user object)."""
    user.__dict__.pop("_ovm_roles", None)


def where(user, action: str) -> tuple[bool, frozenset[int]]:
    """(estate-wide, ids of the pools) where the user's roles grant ``action``."""
    held = [(role, pool) for role, pool in _held(user) if _grants(action, role, pool)]
    return any(pool is None for _r, pool in held), frozenset(pool for _r, pool in held if pool is not None)


def pools_of(obj) -> frozenset[int]:
    """The pools ``obj`` belongs to (see the module's invariants); empty: none, estate-wide only."""
    if obj is None:
        return frozenset()
    if isinstance(obj, (Job, Event)):
        return pools_of(obj.target if isinstance(obj, Job) else obj.obj)
    path = POOL_PATHS.get(type(obj))
    if path is None:
        return frozenset()
    if path == "pk":
        return frozenset({obj.pk})
    if path == "server_pool":
        return frozenset({obj.server_pool_id}) - {None}
    found = type(obj).objects.filter(pk=obj.pk).values_list(path, flat=True)
    return frozenset(found) - {None}


def pools_of_label(label: str, object_id) -> frozenset[int]:
    """``pools_of`` the object named by ``"app_label.model"`` and id (the live feed's payloads)."""
    try:
        model = ContentType.objects.get_by_natural_key(*label.split(".", 1)).model_class()
    except (ContentType.DoesNotExist, ValueError):
        return frozenset()
    path = POOL_PATHS.get(model)
    if path is None or object_id is None:
        return frozenset()
    return frozenset(model.objects.filter(pk=object_id).values_list(path, flat=True)) - {None}


# ------------------------------------------------------------------ predicates


@rules.predicate
def _role_somewhere(user, action) -> bool:
    estate, pools = where(user, action)
    return estate or bool(pools)


@rules.predicate
def _role_on_pool(user, target) -> bool:
    action, obj = target
    estate, pools = where(user, action)
    if estate:
        return True
    if isinstance(obj, Job) and obj.user_id == user.pk and pools:
        return True  # a job's owner sees and aborts it, wherever its object went
    return bool(pools & pools_of(obj))


def allows(user, action: str, obj=None) -> bool:
    """Whether a role of ``user`` grants ``action`` (on ``obj``'s pool, or somewhere when ``obj`` is None)."""
    if obj is None:
        return _role_somewhere.test(user, action)
    return _role_on_pool.test(user, (action, obj))


# ------------------------------------------------------------------ lists


def _pool_q(model, pools: frozenset[int]) -> Q | None:
    path = POOL_PATHS.get(model)
    if path is None:
        return None
    if model in _MULTI:
        return Q(pk__in=model.objects.filter(**{f"{path}__in": pools}).values("pk"))
    return Q(**{f"{path}__in": pools})


def _about_pools_q(type_field: str, id_field: str, pools: frozenset[int]) -> Q:
    """Jobs or events about an object of one of ``pools``."""
    q = Q(pk__in=[])
    for model in POOL_PATHS:
        rows = model.objects.filter(_pool_q(model, pools)).values("pk")
        q |= Q(**{type_field: ContentType.objects.get_for_model(model), f"{id_field}__in": rows})
    return q


def rows_q(user, action: str, model) -> Q | None:
    """The rows of ``model`` on which the user's roles grant ``action``: None for none,
    ``Q()`` for all of them, else a filter by pool made inside the list's own query."""
    estate, pools = where(user, action)
    if estate:
        return Q()
    if not pools:
        return None
    if model is Job:
        return Q(user_id=user.pk) | _about_pools_q("target_type", "target_id", pools)
    if model is Event:
        return _about_pools_q("content_type", "object_id", pools)
    return _pool_q(model, pools)
