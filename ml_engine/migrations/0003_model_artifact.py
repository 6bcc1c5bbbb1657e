"""Model artifacts move into the database; artifacts already on disk under MODEL_DIR are imported
(each one checked against its recorded sha256; one that is missing or does not match is left out,
and that version then refuses to load with a message saying so)."""

import hashlib
from pathlib import Path

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def import_files(apps, schema_editor):
    ModelVersion = apps.get_model("ml_engine", "ModelVersion")
    ModelArtifact = apps.get_model("ml_engine", "ModelArtifact")
    folder = Path(settings.MODEL_DIR)
    for record in ModelVersion.objects.all():
        try:
            raw = (folder / record.artifact).read_bytes()
        except OSError:
            continue
        if hashlib.sha256(raw).hexdigest() == record.artifact_sha256:
            ModelArtifact.objects.create(model_version=record, content=raw, size=len(raw))


class Migration(migrations.Migration):

    dependencies = [
        ("ml_engine", "0002_assessment_public_id"),
    ]

    operations = [
        migrations.CreateModel(
            name="ModelArtifact",
            fields=[
                (
                    "model_version",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="stored_artifact",
                        serialize=False,
                        to="ml_engine.modelversion",
                    ),
                ),
                ("content", models.BinaryField()),
                ("size", models.PositiveIntegerField()),
            ],
        ),
        migrations.AlterField(
            model_name="modelversion",
            name="artifact",
            field=models.CharField(
                help_text="Where `models export` writes the joblib file, relative to the export folder.",
                max_length=255,
            ),
        ),
        migrations.RunPython(import_files, migrations.RunPython.noop),
    ]
