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


class Role(models.TextChoices):
    """Roles on server pools (ovmweb/inventory/roles.py says what each may do). Each includes
    the ones below it: an Administrator may do what an Operator may, an Operator what a Viewer may."""

    ADMINISTRATOR = "administrator", _("Administrator")
    OPERATOR = "operator", _("Operator")
    VIEWER = "viewer", _("Viewer")


class RoleAssignment(models.Model):
    """A role granted to one user or one group, on one server pool or (``server_pool`` null)
    on the whole estate.

    Invariants (database constraints): exactly one of ``user`` and ``group``; a grantee holds
    a given role on a given pool (or on the estate) at most once. Rows are made and deleted
    by ``ovmweb.inventory.services.roles`` only, never changed: a change of role is a removal
    and a grant, each an event on the pool and an audit record."""

    role = models.CharField(_("role"), max_length=16, choices=Role.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_assignments",
        verbose_name=_("user"),
    )
    group = models.ForeignKey(
        "auth.Group",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_assignments",
        verbose_name=_("group"),
    )
    # A string reference: accounts sits below inventory and imports nothing of it.
    server_pool = models.ForeignKey(
        "inventory.ServerPool",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="role_assignments",
        verbose_name=_("server pool"),
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("granted"), default=timezone.now, editable=False)

    class Meta:
        ordering = ["server_pool_id", "role", "id"]
        verbose_name = _("role assignment")
        verbose_name_plural = _("role assignments")
        constraints = [
            models.CheckConstraint(
                condition=models.Q(user__isnull=False, group__isnull=True)
                | models.Q(user__isnull=True, group__isnull=False),
                name="roleassignment_one_grantee",
            ),
            # NULL is never equal to NULL in a unique index: the estate-wide rows get their own.
            models.UniqueConstraint(
                fields=["user", "server_pool", "role"],
                condition=models.Q(user__isnull=False, server_pool__isnull=False),
                name="roleassignment_unique_user_pool",
            ),
            models.UniqueConstraint(
                fields=["user", "role"],
                condition=models.Q(user__isnull=False, server_pool__isnull=True),
                name="roleassignment_unique_user_estate",
            ),
            models.UniqueConstraint(
                fields=["group", "server_pool", "role"],
                condition=models.Q(group__isnull=False, server_pool__isnull=False),
                name="roleassignment_unique_group_pool",
            ),
            models.UniqueConstraint(
                fields=["group", "role"],
                condition=models.Q(group__isnull=False, server_pool__isnull=True),
                name="roleassignment_unique_group_estate",
            ),
        ]

    @property
    def grantee(self):
        return self.user if self.user_id is not None else self.group

    def __str__(self) -> str:
        where = self.server_pool if self.server_pool_id is not None else _("the whole estate")
        return f"{self.grantee}: {self.get_role_display()} ({where})"
