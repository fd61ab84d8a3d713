"""Delete ended executions older than the retention period (``FLOWSITE_RETENTION_DAYS``)."""

from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from executions.services import executions_prune


class Command(BaseCommand):
    help = (
        "Delete executions that ended more than --days days ago (default FLOWSITE_RETENTION_DAYS)"
        " with their history and bookkeeping. Running executions are never touched."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=float, default=None, help="retention in days")
        parser.add_argument(
            "--dry-run", action="store_true", help="only count what would be deleted"
        )

    def handle(self, *args, days: float | None = None, dry_run: bool = False, **options):
        days = settings.FLOWSITE_RETENTION_DAYS if days is None else days
        if not 0 <= days <= 36500:
            raise CommandError("--days must be between 0 and 36500")
        count = executions_prune(older_than=timedelta(days=days), dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} {count} execution(s) that ended more than {days:g} days ago")
