"""DRF authentication by API token, with the header scheme clients already use:
``Authorization: Token <key>``."""

from __future__ import annotations

import logging

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.authentication import TokenAuthentication

from . import throttle, tokens

security_log = logging.getLogger("ovmweb.security")


class ApiTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            # 160-bit keys cannot be guessed, so refusals are logged, not throttled.
            security_log.warning("API token refused: address=%s", throttle.client_address(request))
            raise

    def authenticate_credentials(self, key):
        token = tokens.authenticate_key(key)
        if token is None:
            raise exceptions.AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed(_("User inactive or deleted."))
        return (token.user, token)
