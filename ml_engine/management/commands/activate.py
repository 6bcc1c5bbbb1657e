"""`python manage.py activate VERSION`: roll forward or back; every process follows within 2 s."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.registry import ArtifactError
from ml_engine.services import model_activate


class Command(BaseCommand):
    help = "Serve VERSION from now on, in every running process (checked before it is switched on)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version")

    def handle(self, *args: Any, version: str, **options: Any) -> None:
        try:
            record = model_activate(version=version)
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Model version {record.version} is active."))
