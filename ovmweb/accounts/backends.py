"""The password backend every sign-in goes through (web form, admin, any API view that
calls ``authenticate``), so no path that takes a password escapes the throttle."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend

from . import throttle


class ThrottledModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if username is None or password is None:
            return None
        address = throttle.client_address(request)
        # LoginThrottled is a PermissionDenied: django.contrib.auth.authenticate() then
        # stops, tries no other backend, and answers None.
        throttle.enforce(username=username, address=address)
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is None:
            throttle.record_failure(username=username, address=address)
        else:
            throttle.record_success(username=username, address=address)
        return user
