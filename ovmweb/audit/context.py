"""Who is acting in this request, for records whose signal does not say (a permission
added in the admin names the user changed, not the administrator who changed it)."""

from __future__ import annotations

from contextvars import ContextVar

from ovmweb.accounts.throttle import client_address

_request = ContextVar("ovmweb_audit_request", default=None)


def current_request():
    return _request.get()


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def actor_and_address(request=None) -> tuple:
    """(user or None, address) of ``request`` or of the request being served."""
    request = request if request is not None else current_request()
    if request is None:
        return None, ""
    user = getattr(request, "user", None)
    if user is not None and not getattr(user, "is_authenticated", False):
        user = None
    return user, client_address(request)
