"""`python manage.py train`: cross-validate the candidates, store and (by default) activate."""

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from tqdm import tqdm

from ml_engine.services import GATE_MAX_SHIFT, TrainingStorageError, model_train
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


def calibration_lines(c: dict) -> list[str]:
    """The served candidate's calibration figures in words (README: "The model")."""
    floor, slope, intercept, b = c["ece_floor"], c["slope"], c["intercept"], c["brier"]
    return [
        f"\nCalibration of the served candidate: its out-of-fold risks pooled per repeat ({c['rows']} rows, "
        f"mean over {c['repeats']} repeat(s)); {c['binning']}.",
        f"  ECE {c['ece']:.4f}"
        + (f" (repeats {c['ece_range'][0]:.4f}–{c['ece_range'][1]:.4f})" if c["repeats"] > 1 else "")
        + "; a perfectly calibrated "
        f"model with these risks shows {floor['mean']:.4f} on average, {floor['p95']:.4f} at the 95th percentile "
        f"(noise floor, {floor['draws']} simulated outcome sets, seed {floor['seed']})",
        f"  calibration slope {slope['estimate']:.3f} (95 % interval {slope['low']:.3f} to {slope['high']:.3f}), "
        f"intercept {intercept['estimate']:.3f} ({intercept['low']:.3f} to {intercept['high']:.3f}); "
        "calibrated is slope 1, intercept 0",
        f"  Brier {b['brier']:.4f} = reliability {b['reliability']:.4f} − resolution {b['resolution']:.4f} "
        f"+ uncertainty {b['uncertainty']:.4f} + within-bin {b['within_bin']:.4f}",
    ]


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
            help="Activate even when the promotion check refuses (recorded in the version's metadata).",
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
        data = record.metadata["data"]
        self.stdout.write(f"\nData: {data['rows']} rows ({data['positives']} positive), sha256 {data['sha256'][:12]}…")
        gate = record.metadata.get("activation_gate")
        if options["from_db"]:
            sources = data["sources"]
            self.stdout.write(
                f"Rows: {data['rows'] - data['extra_rows']} from the CSV; added from the database: "
                f"{data['extra_rows']} assessments with an outcome ({sources['api_key']} recorded with an API key, "
                f"{sources['staff']} by staff); left out: {sources['unverified']} outcomes of unknown origin."
            )
        # Per-fold means ± standard deviations, and calibration on pooled out-of-fold risks beside
        # its noise floor (README: "The model").
        header = (
            f"{'candidate':<18} {'additive':<8} "
            + " ".join(f"{m:>16}" for m in METRIC_NAMES)
            + f" {'ECE pooled (floor)':>19}"
        )
        self.stdout.write("\n" + header + "\n" + "-" * len(header))
        summaries = outcome.metadata["candidates"]
        for result in outcome.results:
            marker = "*" if result is outcome.chosen else " "
            cells = " ".join(f"{result.mean(m):>8.4f} ± {result.std(m):.4f}" for m in METRIC_NAMES)
            pooled = summaries[result.candidate.name]
            self.stdout.write(
                f"{result.candidate.name + marker:<18} {'yes' if result.candidate.additive else 'no':<8} {cells}"
                f" {pooled['ece_pooled']:>10.4f} ({pooled['ece_floor']:.4f})"
            )
        self.stdout.write(
            f"\n* served: {outcome.chosen.candidate.name} — {outcome.chosen.candidate.description}"
            f"\nthreshold {outcome.metadata['threshold']} (Youden's J on out-of-fold risks);"
            f" bands {outcome.metadata['bands']}"
        )
        for line in calibration_lines(outcome.metadata["calibration"]):
            self.stdout.write(line)
        if gate is not None:
            self.print_gate(gate)
        state = "active" if record.is_active else "stored, not active"
        self.stdout.write(self.style.SUCCESS(f"Model version {record.version} ({state})."))
        if not record.is_active and not options["no_activate"]:
            self.stdout.write(
                f"Not activated because the promotion check refused it. Inspect it (`python manage.py models "
                f"compare {gate['measures']['active_version']} {record.version}`), then "
                f"`python manage.py activate {record.version}` or retrain with --force."
            )
        sys.stdout.flush()

    def print_gate(self, gate: dict) -> None:
        """The promotion check as measured, and its verdict (README: "Promotion gate")."""
        m = gate["measures"]
        self.stdout.write("\nPromotion check: " + gate["rule"])
        if "compared" in m:
            self.stdout.write(f"  {m['compared']}; activated.")
            return
        self.stdout.write(
            f"  against the active version {m['active_version']}, on {m['folds']} paired folds "
            f"({m['fold_plan']}; the new version's {m['database_rows']} database rows only ever train):"
        )
        self.stdout.write(
            f"  log loss: new {m['log_loss_new']:.4f}, active {m['log_loss_active']:.4f}, "
            f"new - active {m['log_loss_difference']:+.4f} (worse in {m['log_loss_worse_folds']} of {m['folds']} folds)"
        )
        self.stdout.write(
            f"  ROC AUC:  new {m['roc_auc_new']:.4f}, active {m['roc_auc_active']:.4f}, "
            f"new - active {m['roc_auc_difference']:+.4f} (lower in {m['roc_auc_worse_folds']} of {m['folds']} folds)"
        )
        self.stdout.write(
            f"  reference people whose risk moves by more than {GATE_MAX_SHIFT:.0%} points: "
            f"{m['moved_share']:.1%} (largest move {m['max_shift']:.0%})"
        )
        if gate["passed"]:
            self.stdout.write("  passed: not worse than the active version.")
        for reason in gate["reasons"]:
            self.stdout.write(self.style.WARNING(f"  refused: {reason}"))
        if gate["forced"]:
            self.stdout.write(self.style.WARNING("  --force: activated anyway (recorded in the version's metadata)."))
