"""`python manage.py purge_assessments`: delete assessments older than the retention period, and
the daily prediction counts of monitoring with them (README: "Monitoring").

A ``--days`` that would delete every stored assessment (``--days 0`` always does) asks for
confirmation first, or needs ``--yes`` when nobody is at a terminal; the scheduled purge with the
retention setting never asks (README: "Commands")."""

import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.selectors import assessment_count
from ml_engine.services import assessments_purge, prediction_counts_purge


class Command(BaseCommand):
    help = "Delete stored assessments (health data) older than ASSESSMENT_RETENTION_DAYS."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Override the retention setting.")
        parser.add_argument("--yes", action="store_true", help="Do not ask before deleting every assessment.")

    def handle(self, *args: Any, days: int | None, yes: bool, **options: Any) -> None:
        explicit = days is not None
        days = settings.ASSESSMENT_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be 0 or more.")
        total = assessment_count()
        doomed = assessment_count(older_than_days=days)
        if explicit and doomed == total and doomed > 0 and not yes:
            question = f"This deletes all {doomed} stored assessments and their outcomes. Type 'yes' to continue: "
            if not sys.stdin.isatty():
                raise CommandError(
                    f"This would delete all {doomed} stored assessments; nothing was deleted. "
                    "Run it again with --yes if that is what you want."
                )
            if input(question).strip().lower() != "yes":
                raise CommandError("Nothing was deleted.")
        deleted = assessments_purge(older_than_days=days)
        counts = prediction_counts_purge(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} assessments older than {days} days.")
        self.stdout.write(f"Deleted {counts} daily prediction counts of days before {days} days ago.")
