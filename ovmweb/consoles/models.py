"""Console tickets: short-lived, single-use, stored only as a hash."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class ConsoleKind(models.TextChoices):
    VNC = "vnc", _("VNC console")
    SERIAL = "serial", _("Serial console")


class ConsoleTicket(models.Model):
    token_hash = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    vm = models.ForeignKey("inventory.VirtualMachine", on_delete=models.CASCADE, related_name="console_tickets")
    kind = models.CharField(max_length=8, choices=ConsoleKind.choices)
    read_only = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["expires_at"])]
