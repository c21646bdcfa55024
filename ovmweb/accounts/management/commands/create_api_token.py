"""`manage.py create_api_token admin`: print a new API token's key (shown this once)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ovmweb.accounts import tokens


class Command(BaseCommand):
    help = (
        "Make an API token for a user and print its key. Only a hash is stored: "
        "the key cannot be shown again, so keep it (clients send 'Authorization: Token <key>')."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for (shown in the admin).")
        parser.add_argument("-r", "--reset", action="store_true", help="Revoke the user's other tokens first.")

    def handle(self, *args, username: str, name: str, reset: bool, **options):
        User = get_user_model()
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist as exc:
            raise CommandError(f"no user named {username!r}") from exc
        _, key = tokens.create_token(user=user, name=name, replace=reset)
        self.stdout.write(key)
