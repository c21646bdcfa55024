"""`manage.py clear_login_failures [USERNAME]`: lift a sign-in throttle before its window ends
(e.g. when someone's failures have locked the administrator out)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ovmweb.accounts import throttle


class Command(BaseCommand):
    help = "Forget failed sign-ins: of one user name, of one address (--address), or all."

    def add_arguments(self, parser):
        parser.add_argument("username", nargs="?", help="Only this user name's failures.")
        parser.add_argument("--address", help="Only the failures from this address.")

    def handle(self, *args, username: str | None, address: str | None, **options):
        deleted = throttle.clear_failures(username=username, address=address)
        self.stdout.write(f"{deleted} failed sign-in(s) forgotten")
