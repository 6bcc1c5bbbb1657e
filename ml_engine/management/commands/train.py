"""`python manage.py train`: cross-validate the candidates, store and (by default) activate."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from tqdm import tqdm

from ml_engine.services import GATE_RULE, TrainingStorageError, model_train
from ml_engine.training import METRIC_NAMES, SERVED_CANDIDATE, candidates

SPLITS = 5


class _Unterminated:
    """The command's stdout without the newline Django's OutputWrapper adds to every write, so the
    bar redraws in place."""

    def __init__(self, out: OutputWrapper) -> None:
        self.out = out

    def write(self, text: str) -> None:
        self.out.write(text, ending="")

    def flush(self) -> None:
        self.out.flush()


class Command(BaseCommand):
    help = "Train a model with repeated stratified cross-validation, store it as a new version and activate it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-activate", action="store_true", help="Store the version without serving it.")
        parser.add_argument(
            "--from-db", action="store_true", help="Add assessments with a recorded outcome to the CSV data."
        )
        parser.add_argument("--repeats", type=int, default=10, help="Cross-validation repeats (default 10 x 5 folds).")
        parser.add_argument(
            "--quick",
            action="store_true",
            help=f"Cross-validate only the served candidate ({SERVED_CANDIDATE}) with one 5-fold round.",
        )
        parser.add_argument("--seed", type=int, default=42)
        parser.add_argument(
            "--force",
            action="store_true",
            help="With --from-db: activate even when the activation check refuses (recorded in the version).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        quick = options["quick"]
        folds = SPLITS if quick else options["repeats"] * SPLITS
        pool = 1 if quick else len(candidates())
        if quick:
            self.stdout.write(
                f"Quick training: only {SERVED_CANDIDATE}, one 5-fold cross-validation (seed {options['seed']})"
            )
        else:
            self.stdout.write(
                f"Cross-validating {pool} candidates: {options['repeats']} x 5-fold repeated stratified CV "
                f"(seed {options['seed']})"
            )
        # One bar over every fit of every candidate, with the rate and the time left.
        bar = tqdm(total=folds * pool, file=_Unterminated(self.stdout), unit="fit", dynamic_ncols=True, mininterval=0.5)

        def progress(name: str, done: int, total: int) -> None:
            bar.set_description(f"{name:<18}", refresh=False)
            bar.update(1)

        try:
            record, outcome = model_train(
                activate=not options["no_activate"],
                from_db=options["from_db"],
                repeats=options["repeats"],
                seed=options["seed"],
                quick=quick,
                force=options["force"],
                progress=progress,
            )
        except TrainingStorageError as exc:
            raise CommandError(str(exc)) from None
        finally:
            bar.close()
        data = outcome.metadata["data"]
        self.stdout.write(f"\nData: {data['rows']} rows ({data['positives']} positive), sha256 {data['sha256'][:12]}…")
        gate = record.metadata.get("activation_gate")
        if options["from_db"] and gate is not None:
            sources = gate["sources"]
            self.stdout.write(
                f"Rows: {data['rows'] - data['extra_rows']} from the CSV; added from the database: "
                f"{data['extra_rows']} assessments with an outcome ({sources['api_key']} recorded with an API key, "
                f"{sources['staff']} by staff); left out: {sources['unverified']} outcomes of unknown origin."
            )
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
        if options["from_db"] and gate is not None:
            self.stdout.write("\nActivation check: " + GATE_RULE)
            for name, value in gate["measures"].items():
                self.stdout.write(f"  {name}: {value}")
            if gate["passed"]:
                self.stdout.write("  passed.")
            for reason in gate["reasons"]:
                self.stdout.write(self.style.WARNING(f"  refused: {reason}"))
            if gate["forced"]:
                self.stdout.write(
                    self.style.WARNING("  --force: activated anyway (recorded in the version's metadata).")
                )
        state = "active" if record.is_active else "stored, not active"
        self.stdout.write(self.style.SUCCESS(f"Model version {record.version} ({state})."))
        if not record.is_active and not options["no_activate"]:
            self.stdout.write(
                f"Not activated because the activation check refused it. Inspect it, then "
                f"`python manage.py activate {record.version}` or retrain with --force."
            )
        sys.stdout.flush()
