"""`python manage.py ensure_model`: train only when no model is active (used by `make run`)."""

from django.core.management import call_command
from django.core.management.base import BaseCommand

from ml_engine.models import ModelVersion
from ml_engine.registry import active_model


class Command(BaseCommand):
    help = "Train and activate a model if none is active or the active one does not load here."

    def handle(self, *args, **options):
        if ModelVersion.objects.filter(is_active=True).exists():
            active_model.refresh()
            if active_model.current is not None:
                self.stdout.write(f"Model {active_model.current.version} is active.")
                return
            self.stdout.write(f"The active model does not load ({active_model.error}); training a new one.")
        call_command("train", stdout=self.stdout)
