"""Production settings: secure cookies and an explicit secret key."""

import os

from .base import *  # noqa: F403

if not os.environ.get("OVMWEB_SECRET_KEY"):
    raise RuntimeError("OVMWEB_SECRET_KEY must be set in production")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
