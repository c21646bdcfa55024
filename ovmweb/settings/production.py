"""Production settings: ovmweb behind a reverse proxy that terminates TLS.

`DJANGO_SETTINGS_MODULE=ovmweb.settings.production manage.py check --deploy` reports
nothing with these defaults. The proxy must set ``X-Forwarded-Proto: https`` on the
requests it forwards and drop any such header a client sent: Django then trusts that
the request came over TLS. ``OVMWEB_HTTPS=false`` turns the TLS-only settings off for a
site served over plain HTTP (a test bench; never over a network you do not own).
"""

import os

from .base import *  # noqa: F403
from .base import env_bool

if not os.environ.get("OVMWEB_SECRET_KEY"):
    raise RuntimeError("OVMWEB_SECRET_KEY must be set in production")
if not os.environ.get("OVMWEB_ALLOWED_HOSTS"):
    raise RuntimeError("OVMWEB_ALLOWED_HOSTS must name the site's host names in production")

DEBUG = False

OVMWEB_HTTPS = env_bool("OVMWEB_HTTPS", True)
if OVMWEB_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # A year, as browsers' preload lists ask; 0 turns HSTS off (e.g. while trying TLS out).
    SECURE_HSTS_SECONDS = int(os.environ.get("OVMWEB_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("OVMWEB_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("OVMWEB_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Preloading binds the whole domain to HTTPS in every browser for good: the domain
        # owner's decision (OVMWEB_HSTS_PRELOAD=true), not a default of this application.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
