"""`python manage.py purge_assessments`: delete assessments older than the retention period."""

from django.conf import settings
from django.core.management.base import BaseCommand

from ml_engine.services import assessments_purge


class Command(BaseCommand):
    help = "Delete stored assessments (health data) older than ASSESSMENT_RETENTION_DAYS."

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None, help="Override the retention setting.")

    def handle(self, *args, days, **options):
        days = settings.ASSESSMENT_RETENTION_DAYS if days is None else days
        deleted = assessments_purge(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} assessments older than {days} days.")
