"""`python manage.py models`: the table of stored versions."""

from django.core.management.base import BaseCommand

from ml_engine.models import ModelVersion
from ml_engine.registry import ArtifactError, load_version


class Command(BaseCommand):
    help = "List stored model versions with their metrics, data hash and which one is active."

    def handle(self, *args, **options):
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
