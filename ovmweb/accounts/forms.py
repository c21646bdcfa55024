"""Sign-in forms that say "too many attempts" instead of "wrong password" when throttled."""

from __future__ import annotations

from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from . import throttle


class ThrottledFormMixin:
    def clean(self):
        username = self.cleaned_data.get("username")
        if username:
            try:
                throttle.enforce(username=username, address=throttle.client_address(self.request))
            except throttle.LoginThrottled as exc:
                raise ValidationError(str(exc), code="throttled") from exc
        return super().clean()


class ThrottledAuthenticationForm(ThrottledFormMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledFormMixin, AdminAuthenticationForm):
    pass
