"""`python manage.py models [list | export VERSION [--dir DIR] | import PATH | compare A B]`: the
stored versions, moving a version between installations through files (README: "Model registry"),
and two versions side by side on stored assessments (README: "Comparing versions")."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ml_engine.comparison import BOOTSTRAP_DRAWS, COMPARE_LIMIT, Comparison, versions_compare
from ml_engine.evaluation import Interval
from ml_engine.registry import ArtifactError, export_version, import_version, load_version
from ml_engine.selectors import model_version_list
from ml_engine.services import serving_plan_get


def _ece(metrics: dict) -> str:
    if "ece_pooled" not in metrics:
        return "-"
    return f"{metrics['ece_pooled']:.4f} ({metrics['ece_floor']:.4f})"


class Command(BaseCommand):
    help = (
        "List stored model versions with their metrics, data hash and which one is active; "
        "`export VERSION [--dir DIR]` writes DIR/VERSION/model.joblib and metadata.json (DIR defaults "
        "to MODEL_DIR); `import PATH` stores such a folder as a new, inactive version; `compare A B` "
        "scores the most recent assessments with both versions: agreement, and AUC, Brier and calibration "
        "on recorded outcomes with paired bootstrap intervals."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", nargs="?", choices=["list", "export", "import", "compare"], default="list")
        parser.add_argument(
            "target", nargs="?", help="export: the version; import: the exported folder; compare: version A"
        )
        parser.add_argument("other", nargs="?", help="compare: version B")
        parser.add_argument("--dir", default=None, help="export: the folder to write to (default MODEL_DIR)")
        parser.add_argument(
            "--limit",
            type=int,
            default=COMPARE_LIMIT,
            help=f"compare: score the N most recent assessments (1 to {COMPARE_LIMIT}, the default)",
        )
        parser.add_argument(
            "--bootstrap", type=int, default=BOOTSTRAP_DRAWS, help="compare: bootstrap resamples (10 to 10000)"
        )
        parser.add_argument("--seed", type=int, default=0, help="compare: the bootstrap's seed")

    def handle(
        self, *args: Any, action: str, target: str | None, other: str | None, dir: str | None, **options: Any
    ) -> None:
        if action == "list":
            self.list_versions()
            return
        try:
            if action == "compare":
                if not (target and other):
                    raise CommandError("`models compare` needs two versions: `models compare A B`.")
                if not 1 <= options["limit"] <= COMPARE_LIMIT:
                    raise CommandError(f"--limit must be 1 to {COMPARE_LIMIT}.")
                if not 10 <= options["bootstrap"] <= 10000:
                    raise CommandError("--bootstrap must be 10 to 10000.")
                comparison = versions_compare(
                    a=target, b=other, limit=options["limit"], draws=options["bootstrap"], seed=options["seed"]
                )
                self.print_comparison(comparison)
                return
            if not target:
                raise CommandError(f"`models {action}` needs a {'version' if action == 'export' else 'folder'}.")
            if action == "export":
                folder = export_version(version=target, directory=Path(dir) if dir else None)
                self.stdout.write(self.style.SUCCESS(f"Exported {target} to {folder}."))
            else:
                record = import_version(path=Path(target))
                self.stdout.write(
                    self.style.SUCCESS(f"Imported {record.version} (not active; `activate {record.version}`).")
                )
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc

    def list_versions(self) -> None:
        rows = model_version_list()
        if not rows:
            self.stdout.write("No model versions. Run `python manage.py train`.")
            return
        # ECE: pooled out-of-fold, and its noise floor (README: "The model"); "-" for versions
        # stored before these were computed.
        header = (
            f"{'version':<24} {'created (UTC)':<19} {'algorithm':<16} {'roc_auc':>7} {'brier':>7} "
            f"{'ece (floor)':>16}  {'data sha256':<12}  active"
        )
        self.stdout.write(header + "\n" + "-" * len(header))
        for r in rows:
            m = r.metrics
            self.stdout.write(
                f"{r.version:<24} {r.created_at:%Y-%m-%d %H:%M:%S} {r.algorithm:<16} "
                f"{m.get('roc_auc', float('nan')):>7.4f} {m.get('brier', float('nan')):>7.4f} "
                f"{_ece(m):>16}  {r.data_sha256[:12]:<12}  {'*' if r.is_active else ''}"
            )
        active = next((r for r in rows if r.is_active), None)
        if active is not None:
            try:
                load_version(active)  # the same checks a serving process makes before it switches
            except ArtifactError as exc:
                self.stdout.write(self.style.ERROR(f"\nThe active version does not load: {exc}"))
        self.list_plan({r.version: r for r in rows})

    def list_plan(self, records: dict[str, Any]) -> None:
        """The shadow and canary in force (README: "Model registry"), checked as a process would."""
        plan = serving_plan_get()
        if plan is None or not (plan.shadow_version or plan.canary_version):
            return
        since = f"since {plan.changed_at:%Y-%m-%d %H:%M:%S} UTC, by {plan.changed_by}"
        roles = []
        if plan.shadow_version:
            roles.append(("shadow", plan.shadow_version, f"Shadow: {plan.shadow_version} ({since})"))
        if plan.canary_version:
            share = f"{plan.canary_share:.1%} of new sessions and REST/V2 requests"
            roles.append(("canary", plan.canary_version, f"Canary: {plan.canary_version} answers {share} ({since})"))
        self.stdout.write("")
        for role, version, line in roles:
            self.stdout.write(line)
            record = records.get(version)
            try:
                if record is None:
                    raise ArtifactError(f"No model version {version!r} is stored.")
                load_version(record)
            except ArtifactError as exc:
                self.stdout.write(self.style.ERROR(f"The {role} version does not load, so it does not serve: {exc}"))

    def print_comparison(self, c: Comparison) -> None:
        w = self.stdout.write
        w(f"A: {c.a}\nB: {c.b}")
        w(f"Scored: the {c.assessments} most recent stored assessments (at most {c.limit}), each with both versions.")
        if not c.assessments or c.mean_abs_difference is None or c.max_abs_difference is None:
            w(c.note)
            return
        w(
            f"Agreement: mean |risk B - risk A| {100 * c.mean_abs_difference:.2f} points "
            f"(largest {100 * c.max_abs_difference:.2f}); band flips {c.band_flips} of {c.assessments} "
            f"({c.band_flip_share:.1%})"
        )
        for change, n in c.band_changes.items():
            w(f"  {change}: {n}")
        w(f"Outcomes recorded by an API key or staff among them: {c.outcomes} ({c.positives} developed diabetes).")
        if not c.enough_outcomes:
            w(self.style.WARNING(c.note))
            return
        w(
            f"Paired bootstrap: {c.bootstrap_draws} resamples of these {c.outcomes} outcomes (seed "
            f"{c.bootstrap_seed}), the same rows for both versions; 95 % percentile intervals."
        )
        header = f"{'figure':<22} {'A':>26} {'B':>26} {'B - A':>27}"
        w(header + "\n" + "-" * len(header))

        def cell(i: Interval | None, width: int) -> str:
            text = "not estimable" if i is None else f"{i.estimate:.4f} [{i.low:.4f}, {i.high:.4f}]"
            return f"{text:>{width}}"

        for f in c.figures:
            w(f"{f.name:<22} {cell(f.a, 26)} {cell(f.b, 26)} {cell(f.difference, 27)}")
        if c.outcomes < 100:
            w(self.style.WARNING(f"Only {c.outcomes} outcomes: the intervals are wide; read them, not the estimates."))
