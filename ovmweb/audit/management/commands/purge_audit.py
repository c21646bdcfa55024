"""`manage.py purge_audit`: delete audit records older than OVMWEB_AUDIT_RETENTION_DAYS."""

from django.core.management.base import BaseCommand

from ovmweb.audit.services import purge_expired


class Command(BaseCommand):
    help = "Delete audit records older than the retention period (OVMWEB_AUDIT_RETENTION_DAYS)."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Keep this many days instead of the setting.")

    def handle(self, *args, days=None, **options):
        deleted = purge_expired(days=days)
        self.stdout.write(f"{deleted} audit record(s) deleted.")
