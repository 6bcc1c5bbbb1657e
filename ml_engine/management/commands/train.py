"""`python manage.py train`: cross-validate the candidates, store and (by default) activate."""

import sys

from django.core.management.base import BaseCommand

from ml_engine.services import model_train
from ml_engine.training import METRIC_NAMES


class Command(BaseCommand):
    help = "Train a model with repeated stratified cross-validation, store it as a new version and activate it."

    def add_arguments(self, parser):
        parser.add_argument("--no-activate", action="store_true", help="Store the version without serving it.")
        parser.add_argument(
            "--from-db", action="store_true", help="Add assessments with a recorded outcome to the CSV data."
        )
        parser.add_argument("--repeats", type=int, default=10, help="Cross-validation repeats (default 10 x 5 folds).")
        parser.add_argument("--seed", type=int, default=42)

    def handle(self, *args, **options):
        last = {}

        def progress(name: str, done: int, total: int) -> None:
            if self.stdout.isatty() or done == total or done == 1:
                end = "\n" if done == total else ""
                self.stdout.write(f"\r  {name:<18} fold {done:>3}/{total}", ending=end)
                self.stdout.flush()
            last[name] = done

        self.stdout.write(
            f"Cross-validating candidates: {options['repeats']} x 5-fold repeated stratified CV "
            f"(seed {options['seed']})"
        )
        record, outcome = model_train(
            activate=not options["no_activate"],
            from_db=options["from_db"],
            repeats=options["repeats"],
            seed=options["seed"],
            progress=progress,
        )
        data = outcome.metadata["data"]
        self.stdout.write(f"\nData: {data['rows']} rows ({data['positives']} positive), sha256 {data['sha256'][:12]}…")
        if options["from_db"]:
            self.stdout.write(f"Added from the database: {data['extra_rows']} assessments with an outcome.")
        header = f"{'candidate':<18} {'additive':<8} " + " ".join(f"{m:>16}" for m in METRIC_NAMES)
        self.stdout.write("\n" + header + "\n" + "-" * len(header))
        for result in outcome.results:
            marker = "*" if result is outcome.chosen else " "
            cells = " ".join(f"{result.mean(m):>8.4f} ± {result.std(m):.4f}" for m in METRIC_NAMES)
            self.stdout.write(
                f"{result.candidate.name + marker:<18} {'yes' if result.candidate.additive else 'no':<8} {cells}"
            )
        self.stdout.write(
            f"\n* served: {outcome.chosen.candidate.name} — {outcome.chosen.candidate.description}"
            f"\nthreshold {outcome.metadata['threshold']} (Youden's J on out-of-fold risks);"
            f" bands {outcome.metadata['bands']}"
        )
        state = "active" if record.is_active else "stored, not active"
        self.stdout.write(self.style.SUCCESS(f"Model version {record.version} ({state})."))
        sys.stdout.flush()
