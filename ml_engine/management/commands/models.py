"""`python manage.py models [list | export VERSION [--dir DIR] | import PATH]`: the stored versions,
and moving a version between installations through files (README: "Model registry")."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from ml_engine.models import ModelVersion
from ml_engine.registry import ArtifactError, export_version, import_version, load_version
from ml_engine.services import serving_plan_get


class Command(BaseCommand):
    help = (
        "List stored model versions with their metrics, data hash and which one is active; "
        "`export VERSION [--dir DIR]` writes DIR/VERSION/model.joblib and metadata.json (DIR defaults "
        "to MODEL_DIR); `import PATH` stores such a folder as a new, inactive version."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", nargs="?", choices=["list", "export", "import"], default="list")
        parser.add_argument("target", nargs="?", help="export: the version; import: the exported folder")
        parser.add_argument("--dir", default=None, help="export: the folder to write to (default MODEL_DIR)")

    def handle(self, *args, action, target, dir, **options):
        if action != "list" and not target:
            raise CommandError(f"`models {action}` needs a {'version' if action == 'export' else 'folder'}.")
        try:
            if action == "export":
                folder = export_version(version=target, directory=Path(dir) if dir else None)
                self.stdout.write(self.style.SUCCESS(f"Exported {target} to {folder}."))
                return
            if action == "import":
                record = import_version(path=Path(target))
                self.stdout.write(
                    self.style.SUCCESS(f"Imported {record.version} (not active; `activate {record.version}`).")
                )
                return
        except ArtifactError as exc:
            raise CommandError(str(exc)) from exc
        self.list_versions()

    def list_versions(self) -> None:
        rows = list(ModelVersion.objects.order_by("created_at"))
        if not rows:
            self.stdout.write("No model versions. Run `python manage.py train`.")
            return
        header = (
            f"{'version':<24} {'created (UTC)':<19} {'algorithm':<16} {'roc_auc':>7} {'brier':>7} {'ece':>7}"
            f"  {'data sha256':<12}  active"
        )
        self.stdout.write(header + "\n" + "-" * len(header))
        for r in rows:
            m = r.metrics
            self.stdout.write(
                f"{r.version:<24} {r.created_at:%Y-%m-%d %H:%M:%S} {r.algorithm:<16} "
                f"{m.get('roc_auc', float('nan')):>7.4f} {m.get('brier', float('nan')):>7.4f} "
                f"{m.get('ece', float('nan')):>7.4f}  {r.data_sha256[:12]:<12}  {'*' if r.is_active else ''}"
            )
        active = next((r for r in rows if r.is_active), None)
        if active is not None:
            try:
                load_version(active)  # the same checks a serving process makes before it switches
            except ArtifactError as exc:
                self.stdout.write(self.style.ERROR(f"\nThe active version does not load: {exc}"))
        self.list_plan({r.version: r for r in rows})

    def list_plan(self, records: dict[str, ModelVersion]) -> None:
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
