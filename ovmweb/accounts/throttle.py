"""Sign-in throttling, per user name and per client address, over a sliding window.

Invariants: after ``OVMWEB_LOGIN_MAX_FAILURES_PER_USER`` failed sign-ins for one user
name within ``OVMWEB_LOGIN_FAILURE_WINDOW`` seconds, or
``OVMWEB_LOGIN_MAX_FAILURES_PER_ADDRESS`` from one address, every further attempt for
that name or from that address is refused, right password or not, until the oldest
failure leaves the window. Refused attempts are not counted (the window does not keep
sliding under a steady attack). Failures live in the database, so every process serving
the site sees the same counts. Log lines (logger ``ovmweb.security``) carry the user
name and the address, never the password.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from django.utils.translation import gettext as _

from .models import LoginFailure

security_log = logging.getLogger("ovmweb.security")


class LoginThrottled(PermissionDenied):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(
            _("Too many failed sign-in attempts. Try again in %(minutes)d minutes.") % {"minutes": minutes}
        )


def _window() -> timedelta:
    return timedelta(seconds=settings.OVMWEB_LOGIN_FAILURE_WINDOW)


def _key(username: str) -> str:
    # Case folded: "Admin" and "admin" count together whatever the user model does with case.
    return (username or "").strip().casefold()[:150]


def client_address(request) -> str:
    """The client's address: REMOTE_ADDR, or behind a trusted reverse proxy (one listed in
    OVMWEB_TRUSTED_PROXIES) the last address of X-Forwarded-For that is not a trusted proxy.
    The header is never believed from anyone else: a client could name any address in it."""
    if request is None:
        return ""
    remote = request.META.get("REMOTE_ADDR", "")
    trusted = settings.OVMWEB_TRUSTED_PROXIES
    if remote not in trusted:
        return remote
    forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
    for address in reversed(forwarded):
        if address not in trusted:
            return _valid_ip(address) or remote
    return remote


def _valid_ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def enforce(*, username: str, address: str) -> None:
    """Raise LoginThrottled if this user name or address has used up its failures."""
    since = timezone.now() - _window()
    recent = LoginFailure.objects.filter(at__gte=since)
    by_user = list(recent.filter(username=_key(username)).order_by("at").values_list("at", flat=True))
    by_address = list(recent.filter(address=address).order_by("at").values_list("at", flat=True)) if address else []
    retry = max(
        _retry_after(by_user, settings.OVMWEB_LOGIN_MAX_FAILURES_PER_USER),
        _retry_after(by_address, settings.OVMWEB_LOGIN_MAX_FAILURES_PER_ADDRESS),
    )
    if retry > 0:
        security_log.warning("sign-in refused (too many failures): username=%r address=%s", username, address)
        raise LoginThrottled(retry)


def _retry_after(failures: list, limit: int) -> int:
    """Seconds until fewer than ``limit`` of ``failures`` (oldest first) are in the window."""
    if len(failures) < limit:
        return 0
    frees_at = failures[len(failures) - limit] + _window()
    return max(1, math.ceil((frees_at - timezone.now()).total_seconds()))


def record_failure(*, username: str, address: str) -> None:
    security_log.warning("sign-in failed: username=%r address=%s", username, address)
    now = timezone.now()
    LoginFailure.objects.filter(at__lt=now - _window()).delete()
    LoginFailure.objects.create(username=_key(username), address=address, at=now)


def record_success(*, username: str, address: str) -> None:
    """A right password clears the user name's failures (not the address's)."""
    security_log.info("sign-in: username=%r address=%s", username, address)
    LoginFailure.objects.filter(username=_key(username)).delete()


def clear_failures(*, username: str | None = None, address: str | None = None) -> int:
    """Forget the failures of ``username`` and/or from ``address`` (all when neither is given)."""
    failures = LoginFailure.objects.all()
    if username is not None:
        failures = failures.filter(username=_key(username))
    if address is not None:
        failures = failures.filter(address=address)
    deleted, _ = failures.delete()
    security_log.info("sign-in failures cleared: username=%r address=%s (%d)", username, address, deleted)
    return deleted
