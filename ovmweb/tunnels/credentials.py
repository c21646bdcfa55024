"""Server credentials at rest: a Fernet token of a small JSON document.

The key is ``settings.OVMWEB_CREDENTIALS_KEY`` (a Fernet key) when set, so it
can be rotated independently of SECRET_KEY; otherwise it is derived from
SECRET_KEY with HKDF under a purpose label, so no other use of SECRET_KEY can
produce or read these tokens.
"""

from __future__ import annotations

import base64
import json

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

_HKDF_INFO = b"ovmweb server credentials v1"


class CredentialsUnreadable(Exception):
    """The stored token was made with another key or was tampered with."""


def _fernet() -> Fernet:
    configured = getattr(settings, "OVMWEB_CREDENTIALS_KEY", "")
    if configured:
        try:
            return Fernet(configured)
        except (ValueError, TypeError) as exc:
            raise ImproperlyConfigured(
                "OVMWEB_CREDENTIALS_KEY must be a Fernet key (32 url-safe base64 bytes)"
            ) from exc
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        settings.SECRET_KEY.encode("utf-8")
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt_credentials(credentials: dict) -> str:
    """Encrypt e.g. ``{"password": ...}`` or ``{"private_key": ...}``; returns an ASCII token."""
    if not isinstance(credentials, dict):
        raise TypeError("credentials must be a dict")
    return _fernet().encrypt(json.dumps(credentials, separators=(",", ":")).encode("utf-8")).decode("ascii")


def decrypt_credentials(token: str) -> dict:
    """The dict given to ``encrypt_credentials``; ``{}`` for an empty token (no credentials stored)."""
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode("ascii")))
    except (InvalidToken, ValueError) as exc:
        # Never echo the token: it is the secret.
        raise CredentialsUnreadable("stored credentials cannot be decrypted with the configured key") from exc


def install_id() -> str:
    """A short stable name of this ovmweb installation (comments of the keys it installs).

    Derived from the credentials key under its own HKDF label: stable for as long as
    the stored credentials are readable, the same in every process of the
    installation, and revealing nothing about the key itself."""
    configured = getattr(settings, "OVMWEB_CREDENTIALS_KEY", "") or settings.SECRET_KEY
    digest = HKDF(algorithm=hashes.SHA256(), length=6, salt=None, info=b"ovmweb install id v1").derive(
        configured.encode("utf-8")
    )
    return digest.hex()
