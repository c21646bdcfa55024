"""What every WebSocket consumer checks before it accepts: the page that opens it is this site's."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings


def origin_allowed(scope) -> bool:
    """The Origin header names this very site, host AND port (or a configured trusted origin);
    absent means refused.

    Browsers always send Origin on WebSocket requests, so a missing one is a
    non-browser client or a stripped header: neither should get a socket on
    the strength of a session cookie (cross-site WebSocket hijacking).
    """
    headers = dict(scope.get("headers") or [])
    origin = headers.get(b"origin", b"").decode("latin1").strip()
    host = headers.get(b"host", b"").decode("latin1").strip().lower()
    if not origin or not host or origin == "null":
        return False
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    if parts.netloc.lower() == host:
        return True
    return f"{parts.scheme}://{parts.netloc}".lower() in {o.lower() for o in settings.CSRF_TRUSTED_ORIGINS}
