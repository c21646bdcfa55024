"""API tokens: made, checked and revoked here only.

Invariant: the key leaves this module once, as the return value of ``create_token``;
the database holds its first ``PREFIX_LENGTH`` characters and its SHA-256, so a copy
of the database (a backup, a leaked dump) lets nobody call the API.

A key is 160 random bits (40 hex digits, the shape DRF's keys had); a plain SHA-256 is
enough for that much entropy, and unlike an HMAC keyed with SECRET_KEY it keeps tokens
valid when the secret key is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from .models import PREFIX_LENGTH, ApiToken

KEY_BYTES = 20
# last_used is refreshed at most this often: one write per token per interval, not per call.
LAST_USED_GRANULARITY = timedelta(minutes=5)


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def create_token(*, user, name: str = "", replace: bool = False) -> tuple[ApiToken, str]:
    """A new token for ``user`` and its key (the only time the key is known).
    ``replace`` revokes the user's other tokens first."""
    if replace:
        ApiToken.objects.filter(user=user).delete()
    key = secrets.token_hex(KEY_BYTES)
    token = ApiToken(user=user, name=name, prefix=key[:PREFIX_LENGTH], digest=digest(key))
    token.full_clean()
    token.save()
    return token, key


def authenticate_key(key: str) -> ApiToken | None:
    """The token whose key is ``key``, or None. Rows are found by prefix and the digest is
    compared in constant time, so response times tell nothing about a stored digest."""
    if len(key) < PREFIX_LENGTH:
        return None
    wanted = digest(key)
    for token in ApiToken.objects.select_related("user").filter(prefix=key[:PREFIX_LENGTH]):
        if hmac.compare_digest(token.digest, wanted):
            _touch(token)
            return token
    return None


def _touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used is None or now - token.last_used >= LAST_USED_GRANULARITY:
        ApiToken.objects.filter(pk=token.pk).update(last_used=now)
        token.last_used = now


def revoke_tokens(*, user) -> int:
    """Delete every token of ``user``; the number deleted."""
    deleted, _ = ApiToken.objects.filter(user=user).delete()
    return deleted
