"""Assessments get an unguessable public id (backfilled for existing rows), outcomes record who
recorded them, and every recording or change of an outcome leaves an audit row."""

import uuid

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

BATCH = 2000


def backfill(apps, schema_editor):
    Assessment = apps.get_model("ml_engine", "Assessment")
    pending = Assessment.objects.filter(public_id=None).only("pk")
    while batch := list(pending[:BATCH]):
        for row in batch:
            row.public_id = uuid.uuid4()
        Assessment.objects.bulk_update(batch, ["public_id"])
    # Outcomes recorded before keys existed came from anyone: retraining ignores them.
    Assessment.objects.exclude(outcome=None).update(outcome_source="unverified", outcome_recorded_by="unknown")


class Migration(migrations.Migration):
    dependencies = [
        ("ml_engine", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="assessment",
            name="public_id",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="assessment",
            name="outcome_recorded_by",
            field=models.CharField(blank=True, default="", max_length=200),
        ),
        migrations.AddField(
            model_name="assessment",
            name="outcome_source",
            field=models.CharField(
                blank=True,
                choices=[
                    ("api_key", "an API key with the outcomes scope"),
                    ("staff", "a staff member"),
                    ("unverified", "unknown (recorded before outcomes needed a key)"),
                ],
                default="",
                max_length=16,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="assessment",
            name="public_id",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.CreateModel(
            name="OutcomeChange",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("changed_at", models.DateTimeField(db_index=True)),
                ("changed_by", models.CharField(max_length=200)),
                (
                    "source",
                    models.CharField(
                        choices=[
                            ("api_key", "an API key with the outcomes scope"),
                            ("staff", "a staff member"),
                            ("unverified", "unknown (recorded before outcomes needed a key)"),
                        ],
                        max_length=16,
                    ),
                ),
                ("old_outcome", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("new_outcome", models.PositiveSmallIntegerField()),
                (
                    "assessment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="outcome_changes",
                        to="ml_engine.assessment",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["-changed_at"]},
        ),
    ]
