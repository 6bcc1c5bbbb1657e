"""`python manage.py activate VERSION`: roll forward or back; every process follows within 2 s.
A shadow and a canary in force end with it (README: "Model registry")."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.registry import ArtifactError
from ml_engine.services import model_activate, serving_plan_get


class Command(BaseCommand):
    help = (
        "Serve VERSION from now on, in every running process (checked before it is switched on). "
        "Ends a shadow and a canary; activating the canary's version makes it answer everyone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version")

    def handle(self, *args: Any, version: str, **options: Any) -> None:
        before = serving_plan_get()
        try:
            record = model_activate(version=version)
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Model version {record.version} is active."))
        if before is not None and before.canary_version:
            if before.canary_version == record.version:
                self.stdout.write("It was the canary: it now answers everyone, its own sessions without a change.")
            else:
                self.stdout.write(
                    f"The canary {before.canary_version} ended: its sessions are answered by {record.version} now."
                )
        if before is not None and before.shadow_version:
            self.stdout.write(f"The shadow {before.shadow_version} ended.")
