"""`python manage.py shadow VERSION | --off`: score every prediction with VERSION too, unseen
(README: "Model registry"); every process follows within 2 s."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.registry import ArtifactError
from ml_engine.services import model_shadow, serving_plan_get


class Command(BaseCommand):
    help = (
        "Score every prediction on every interface with VERSION as well, never shown to anyone: "
        "form and REST assessments store its risk, the other interfaces count how it agrees "
        "(/metrics). `--off` stops it; without arguments, show the shadow in force. "
        "`activate` ends it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", nargs="?")
        parser.add_argument("--off", action="store_true", help="Stop scoring with a shadow version.")

    def handle(self, *args: Any, version: str | None, off: bool, **options: Any) -> None:
        if version and off:
            raise CommandError("Give a VERSION or --off, not both.")
        if not version and not off:
            plan = serving_plan_get()
            if plan is None or not plan.shadow_version:
                self.stdout.write("No shadow version.")
            else:
                self.stdout.write(
                    f"Shadow version {plan.shadow_version} (since {plan.changed_at:%Y-%m-%d %H:%M:%S} UTC)."
                )
            return
        try:
            _, served = model_shadow(version=None if off else version)
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc
        if off:
            self.stdout.write(
                self.style.SUCCESS("No shadow version: predictions are scored by the answering version only.")
            )
            return
        self.stdout.write(
            self.style.SUCCESS(f"Shadow version {version}: every process scores each prediction with it too.")
        )
        if served is not None and served.model.fast is None:
            self.stdout.write(
                self.style.WARNING(
                    f"{version} has no verified fast path, so it will not score predictions (it would slow the "
                    "answers); /metrics counts them in diabetes_shadow_skipped_total."
                )
            )
