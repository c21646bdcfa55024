"""Granting and removing roles on server pools (ovmweb/inventory/roles.py says what they allow).

Rules kept here (and only here):
- a role is granted to exactly one user or one group, on one pool or (``pool`` None) on the
  whole estate; granting a role the grantee already holds there is a 409;
- every grant and removal is an event on the pool (none for the estate: no object to hang it
  on) and, through the RoleAssignment signals, an audit record (ovmweb/audit/receivers.py).
Who may call these is decided by the doors (``pool.roles`` on the pool).
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from ovmweb.accounts.models import Role, RoleAssignment
from ovmweb.errors import Conflict
from ovmweb.inventory.models import ServerPool
from ovmweb.jobs.services import event_record


def _describe(assignment: RoleAssignment) -> dict:
    return {"role": assignment.get_role_display(), "grantee": str(assignment.grantee)}


@transaction.atomic
def role_grant(*, user, pool: ServerPool | None, role: str, grantee_user=None, grantee_group=None) -> RoleAssignment:
    if (grantee_user is None) == (grantee_group is None):
        raise ValidationError(_("Name one user or one group."))
    if role not in Role.values:
        raise ValidationError({"role": _("Unknown role '%(role)s'.") % {"role": role}})
    assignment = RoleAssignment(role=role, user=grantee_user, group=grantee_group, server_pool=pool, granted_by=user)
    assignment.full_clean(validate_constraints=False)
    try:
        with transaction.atomic():
            assignment.save()
    except IntegrityError:
        raise Conflict(_("%(grantee)s already holds the role %(role)s here.") % _describe(assignment)) from None
    if pool is not None:
        event_record(
            obj=pool,
            type="role.granted",
            text=_("Role %(role)s granted to %(grantee)s.") % _describe(assignment),
            user=user,
        )
    return assignment


@transaction.atomic
def role_revoke(*, user, assignment: RoleAssignment) -> None:
    text = _("Role %(role)s removed from %(grantee)s.") % _describe(assignment)
    pool = assignment.server_pool
    assignment.delete()
    if pool is not None:
        event_record(obj=pool, type="role.removed", text=text, user=user)
