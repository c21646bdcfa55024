"""API tokens and failed sign-ins.

An API token row holds no secret: only the key's first characters (to find the row)
and the SHA-256 of the whole key (to check it). The key itself is shown once, when made.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

PREFIX_LENGTH = 8


class ApiToken(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens", verbose_name=_("user")
    )
    name = models.CharField(_("name"), max_length=100, blank=True)
    prefix = models.CharField(_("prefix"), max_length=PREFIX_LENGTH, db_index=True, editable=False)
    digest = models.CharField(_("SHA-256 of the key"), max_length=64, unique=True, editable=False)
    created = models.DateTimeField(_("created"), default=timezone.now, editable=False)
    last_used = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created"]
        verbose_name = _("API token")
        verbose_name_plural = _("API tokens")

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class LoginFailure(models.Model):
    """One failed sign-in; rows older than the throttle window are deleted as new ones come."""

    username = models.CharField(max_length=150)
    address = models.CharField(max_length=45, blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        indexes = [
            models.Index(fields=["username", "at"], name="loginfailure_user_at"),
            models.Index(fields=["address", "at"], name="loginfailure_address_at"),
        ]
