"""Console tickets and console sessions: every rule about who may open which console.

A ticket is the bridge between an authenticated HTTP request (which may use an
API token) and the WebSocket that follows it: it lives at most
``OVMWEB_CONSOLE_TICKET_TTL`` seconds, is redeemed at most once, is bound to
one user, one VM and one console kind, and only its SHA-256 is stored. The
token itself is returned once and never logged.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ovmweb.consoles.models import ConsoleKind, ConsoleTicket
from ovmweb.errors import Conflict
from ovmweb.inventory import permissions
from ovmweb.inventory.choices import Transport, VmStatus
from ovmweb.inventory.models import VirtualMachine
from ovmweb.inventory.selectors import access_vm

# States in which a VM has a console worth connecting to.
CONSOLE_STATES = frozenset({VmStatus.RUNNING, VmStatus.STOPPING, VmStatus.SUSPENDED})
# Tickets are kept this long past expiry for auditing, then purged on the next issue.
_PURGE_AFTER = timedelta(hours=1)


class TicketInvalid(PermissionDenied):
    """The ticket is unknown, expired, used, or bound to another user, VM or kind.

    One exception for all of these on purpose: a caller probing tickets learns nothing.
    """


class ConsoleLimitReached(Conflict):
    """Too many consoles are open for this user or this VM."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def can_interact(user, vm=None) -> bool:
    """Whether the user may type into ``vm``'s console (else it is read-only): a role on the
    VM's pool (Operator, Administrator) or the model permission."""
    return permissions.can(user, "vm.console_input", vm)


def console_port(vm: VirtualMachine, kind: str) -> int | None:
    return vm.vnc_port if kind == ConsoleKind.VNC else vm.serial_port


def _check_console_available(vm: VirtualMachine, kind: str) -> None:
    if vm.status not in CONSOLE_STATES:
        raise Conflict(
            _("Virtual machine '%(name)s' is %(status)s: it has no console to open.")
            % {"name": vm.name, "status": vm.get_status_display()}
        )
    if vm.server_id is None or console_port(vm, kind) is None:
        raise Conflict(
            _("Virtual machine '%(name)s' has no %(kind)s console port on a server.")
            % {"name": vm.name, "kind": ConsoleKind(kind).label}
        )


def ticket_issue(*, user, vm: VirtualMachine, kind: str) -> tuple[ConsoleTicket, str]:
    """Issue a single-use console ticket; returns the row and the token (shown once, never stored).

    Raises PermissionDenied/Http404 if the user may not see the VM, Conflict if
    the VM has no console now or the user/VM console limit is reached.
    """
    if kind not in ConsoleKind.values:
        raise Conflict(_("Unknown console kind '%(kind)s'.") % {"kind": kind})
    vm = access_vm(user, vm.pk, "console")
    _check_console_available(vm, kind)
    read_only = not can_interact(user, vm)
    check_limits(user_id=user.pk, vm_id=vm.pk, read_only=read_only)
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    ticket = ConsoleTicket(
        token_hash=hash_token(token),
        user=user,
        vm=vm,
        kind=kind,
        read_only=read_only,
        expires_at=now + timedelta(seconds=settings.OVMWEB_CONSOLE_TICKET_TTL),
    )
    ticket.full_clean(exclude=["user", "vm"])
    with transaction.atomic():
        ConsoleTicket.objects.filter(expires_at__lt=now - _PURGE_AFTER).delete()
        ticket.save()
    return ticket, token


def ticket_redeem(*, token: str, user, vm_id: int, kind: str) -> ConsoleTicket:
    """Consume a ticket for this user, VM and kind; returns it with ``vm`` and ``vm.server`` loaded.

    The conditional UPDATE makes redemption atomic: of two concurrent
    attempts exactly one sees its row updated. Access and the VM's state are
    checked again, since either may have changed since the ticket was issued.
    """
    if not token or user is None or not user.is_authenticated:
        raise TicketInvalid(_("Invalid console ticket."))
    now = timezone.now()
    token_hash = hash_token(token)
    redeemed = ConsoleTicket.objects.filter(
        token_hash=token_hash, user_id=user.pk, vm_id=vm_id, kind=kind, used_at__isnull=True, expires_at__gt=now
    ).update(used_at=now)
    if redeemed != 1:
        raise TicketInvalid(_("Invalid console ticket."))
    ticket = ConsoleTicket.objects.select_related("vm", "vm__server").get(token_hash=token_hash)
    # Asked of the VM the ticket names (not access_vm: its disk and VNIC prefetches were most of
    # the cost of a console opening, and this ticket already names this user and this VM).
    permissions.authorize(user, "vm.console", ticket.vm)
    _check_console_available(ticket.vm, kind)
    # Permissions may have been withdrawn since issue; never widen, only narrow.
    ticket.read_only = ticket.read_only or not can_interact(user, ticket.vm)
    return ticket


def ticket_redeem_for_proxy(*, token: str) -> ConsoleTicket:
    """Redeem a ticket presented to the standalone proxy (websockify), which has no session.

    The ticket still names its user, whose access is checked again. Read-only
    tickets are refused: a plain byte proxy cannot drop a viewer's input.
    """
    ticket = ConsoleTicket.objects.filter(token_hash=hash_token(token or "")).only("user_id", "vm_id", "kind").first()
    if ticket is None:
        raise TicketInvalid(_("Invalid console ticket."))
    ticket = ticket_redeem(token=token, user=ticket.user, vm_id=ticket.vm_id, kind=ticket.kind)
    if ticket.read_only:
        raise TicketInvalid(_("View-only consoles are served by ovmweb itself, not the standalone proxy."))
    return ticket


# --- open console sessions -------------------------------------------------
#
# Counted per process: the embedded default is one process. Several daphne
# processes each enforce the caps on their own share of the sessions.
#
# View-only sessions may not take the last OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM
# slots of a VM: users who only watch must not lock out those who need to type.


@dataclass(frozen=True)
class SessionHandle:
    user_id: int
    vm_id: int
    read_only: bool = False
    username: str = ""


_sessions_lock = threading.Lock()
_open_by_user: Counter = Counter()
_open_by_vm: Counter = Counter()
# vm_id -> (username, read_only) -> open consoles: who else is watching, for the console page.
_viewers_by_vm: dict[int, Counter] = {}


def view_only_slots_per_vm() -> int:
    """How many consoles of one VM view-only sessions may hold at once (the rest wait for interactive ones)."""
    return max(settings.OVMWEB_CONSOLE_MAX_PER_VM - settings.OVMWEB_CONSOLE_INTERACTIVE_RESERVED_PER_VM, 0)


def _limit_error(user_id: int, vm_id: int, read_only: bool) -> ConsoleLimitReached | None:
    if _open_by_user[user_id] >= settings.OVMWEB_CONSOLE_MAX_PER_USER:
        return ConsoleLimitReached(
            _("You already have %(n)d consoles open.") % {"n": settings.OVMWEB_CONSOLE_MAX_PER_USER}
        )
    if _open_by_vm[vm_id] >= settings.OVMWEB_CONSOLE_MAX_PER_VM:
        return ConsoleLimitReached(
            _("This virtual machine already has %(n)d consoles open.") % {"n": settings.OVMWEB_CONSOLE_MAX_PER_VM}
        )
    if read_only and _open_by_vm[vm_id] >= view_only_slots_per_vm():
        return ConsoleLimitReached(
            _("This virtual machine has %(n)d consoles open; the others are kept for users who may type.")
            % {"n": _open_by_vm[vm_id]}
        )
    return None


def check_limits(*, user_id: int, vm_id: int, read_only: bool = False) -> None:
    with _sessions_lock:
        error = _limit_error(user_id, vm_id, read_only)
    if error is not None:
        raise error


def session_open(*, user_id: int, vm_id: int, read_only: bool = False, username: str = "") -> SessionHandle:
    """Count one open console against the per-user and per-VM caps (raises ConsoleLimitReached).

    A view-only session is refused once the VM's open consoles leave only the
    slots reserved for interactive ones."""
    with _sessions_lock:
        error = _limit_error(user_id, vm_id, read_only)
        if error is not None:
            raise error
        _open_by_user[user_id] += 1
        _open_by_vm[vm_id] += 1
        _viewers_by_vm.setdefault(vm_id, Counter())[(username, read_only)] += 1
    return SessionHandle(user_id=user_id, vm_id=vm_id, read_only=read_only, username=username)


def session_close(handle: SessionHandle) -> None:
    with _sessions_lock:
        _open_by_user[handle.user_id] -= 1
        _open_by_vm[handle.vm_id] -= 1
        if _open_by_user[handle.user_id] <= 0:
            del _open_by_user[handle.user_id]
        if _open_by_vm[handle.vm_id] <= 0:
            del _open_by_vm[handle.vm_id]
        viewers = _viewers_by_vm.get(handle.vm_id)
        if viewers is not None:
            viewers[(handle.username, handle.read_only)] -= 1
            if viewers[(handle.username, handle.read_only)] <= 0:
                del viewers[(handle.username, handle.read_only)]
            if not viewers:
                del _viewers_by_vm[handle.vm_id]


def session_viewers(*, vm_id: int) -> list[dict]:
    """Who has this VM's consoles open in this process: [{username, read_only, sessions}], by name.

    Callers check the asking user's access to the VM first (the names are only for those who may see it).
    """
    with _sessions_lock:
        viewers = dict(_viewers_by_vm.get(vm_id, {}))
    return [
        {"username": name, "read_only": read_only, "sessions": count}
        for (name, read_only), count in sorted(viewers.items())
    ]


def console_target(ticket: ConsoleTicket) -> tuple:
    """(server, port) of the redeemed ticket's console; the server may be local or reached by SSH."""
    vm = ticket.vm
    return vm.server, console_port(vm, ticket.kind)


def is_local(server) -> bool:
    return server.transport == Transport.LOCAL
