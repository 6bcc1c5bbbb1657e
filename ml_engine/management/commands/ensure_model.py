"""`python manage.py ensure_model`: train only when no working model is active (used by `make run`
and by containers as they start; safe when several start at once)."""

from typing import Any

from django.core.management.base import BaseCommand

from ml_engine.services import model_ensure
from ml_engine.training import SERVED_CANDIDATE


class Command(BaseCommand):
    help = (
        "Train and activate a model if none is active or the active one does not load here: only the "
        "served candidate, with a quick 5-fold cross-validation (`train` runs the full comparison)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        def progress(name: str, done: int, total: int) -> None:
            if done == 1:
                self.stdout.write(
                    f"Training {name} (the served candidate) with a quick {total}-fold cross-validation; "
                    "`python manage.py train` compares every candidate."
                )

        version, reason = model_ensure(progress=progress)
        if reason is None:
            self.stdout.write(f"Model {version} is active.")
        else:
            self.stdout.write(
                f"Trained because {reason}: model {version} ({SERVED_CANDIDATE}, quick cross-validation) is active."
            )
