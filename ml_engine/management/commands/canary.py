"""`python manage.py canary VERSION --share 0.1 | --off`: let VERSION answer a share of new live
sessions and REST/V2 requests (README: "Model registry"); every process follows within 2 s."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.registry import ArtifactError
from ml_engine.services import model_canary, serving_plan_get


def share_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError(f"--share must be a number from 0 to 1; got {text!r}.") from None
    if not 0.0 <= value <= 1.0:
        raise CommandError(f"--share must be from 0 to 1; got {text}.")
    return value


class Command(BaseCommand):
    help = (
        "Answer SHARE (0 to 1) of new live sessions and of REST and V2 requests with VERSION; a live "
        "session keeps the version it drew for its whole life, and every answer names its version. "
        "`--share 0` sends no new sessions to it and keeps the ones it has; `--off` ends it (its "
        "sessions go back to the active version); `activate` ends it too. Without arguments, show it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("version", nargs="?")
        parser.add_argument(
            "--share",
            default=None,
            help="The share of new sessions and requests, 0 to 1.",
        )
        parser.add_argument("--off", action="store_true", help="End the canary.")

    def handle(self, *args: Any, version: str | None, share: str | None, off: bool, **options: Any) -> None:
        if version and off:
            raise CommandError("Give a VERSION with --share, or --off, not both.")
        if not version and not off:
            if share is not None:
                raise CommandError("--share needs a VERSION.")
            plan = serving_plan_get()
            if plan is None or not plan.canary_version:
                self.stdout.write("No canary version.")
            else:
                self.stdout.write(
                    f"Canary version {plan.canary_version} answers {plan.canary_share:.1%} of new sessions and "
                    f"requests (since {plan.changed_at:%Y-%m-%d %H:%M:%S} UTC)."
                )
            return
        if off:
            model_canary(version=None)
            self.stdout.write(self.style.SUCCESS("No canary version: the active version answers everything."))
            return
        if share is None:
            raise CommandError("Say how much it answers: --share 0.1 is 10 % of new sessions and requests.")
        value = share_value(share)
        try:
            model_canary(version=version, share=value)
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Canary version {version} answers {value:.1%} of new live sessions and REST/V2 requests."
            )
        )
