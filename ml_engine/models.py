"""Database records of the model registry and of the assessments made with it."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q


class Interface(models.TextChoices):
    """The interface a prediction came through: stored with an assessment, passed to every
    prediction service, and the ``interface`` label of the prediction metrics (README: "Operations")."""

    FORM = "form", "HTML form"
    REST = "rest", "REST API"
    V2 = "v2", "Open Inference Protocol V2"
    WS = "ws", "live WebSocket"


class ModelVersion(models.Model):
    """One trained artifact. Exactly one version is active at a time (or none before training)."""

    version = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    algorithm = models.CharField(max_length=64)
    artifact = models.CharField(
        max_length=255, help_text="Where `models export` writes the joblib file, relative to the export folder."
    )
    artifact_sha256 = models.CharField(max_length=64)
    data_sha256 = models.CharField(max_length=64)
    sklearn_version = models.CharField(max_length=32)
    numpy_version = models.CharField(max_length=32)
    metrics = models.JSONField(default=dict)
    metadata = models.JSONField(default=dict)
    is_active = models.BooleanField(default=False)
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["is_active"], condition=Q(is_active=True), name="one_active_model")
        ]

    def __str__(self) -> str:
        return f"{self.version}{' (active)' if self.is_active else ''}"


class ModelArtifact(models.Model):
    """The joblib bytes of a version, stored in the database so that every process on every machine
    loads the same verified artifact with nothing but a database connection (README: "Model
    registry"). Kept apart from ModelVersion so that listing and polling versions never reads them."""

    model_version = models.OneToOneField(
        ModelVersion, on_delete=models.CASCADE, primary_key=True, related_name="stored_artifact"
    )
    content = models.BinaryField()
    size = models.PositiveIntegerField()

    def __str__(self) -> str:
        return f"artifact of {self.model_version_id} ({self.size} bytes)"


class ModelActivation(models.Model):
    """When each version started serving: the history behind `activate` roll-forwards and backs."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="activations")
    activated_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-activated_at"]

    def __str__(self) -> str:
        return f"{self.model_version.version} at {self.activated_at:%Y-%m-%d %H:%M:%S}"


class ServingPlan(models.Model):
    """Who besides the active version takes part in serving: a shadow that scores every prediction
    unseen, and a canary that answers a share of new sessions and requests (README: "Model
    registry"). Never edited: each change is a new row, so the newest row is the plan in force and
    the older ones are its history (who, when)."""

    changed_at = models.DateTimeField(db_index=True)
    changed_by = models.CharField(max_length=200)
    shadow_version = models.CharField(max_length=64, blank=True, default="")
    canary_version = models.CharField(max_length=64, blank=True, default="")
    canary_share = models.FloatField(default=0.0)
    note = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-changed_at", "-pk"]

    def __str__(self) -> str:
        shadow = self.shadow_version or "none"
        canary = f"{self.canary_version} at {self.canary_share:.0%}" if self.canary_version else "none"
        return f"shadow {shadow}, canary {canary} ({self.changed_at:%Y-%m-%d %H:%M:%S} by {self.changed_by})"


class Assessment(models.Model):
    """A stored prediction from the form or the REST API. Holds health data: see the retention
    setting and `purge_assessments`. WebSocket keystroke predictions are not stored.

    Outside the server an assessment is known only by ``public_id`` (a random UUID); the database
    key is never shown, so ids cannot be guessed or enumerated (README: "Access and roles")."""

    class OutcomeSource(models.TextChoices):
        API_KEY = "api_key", "an API key with the outcomes scope"
        STAFF = "staff", "a staff member"
        UNVERIFIED = "unverified", "unknown (recorded before outcomes needed a key)"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    interface = models.CharField(max_length=8, choices=Interface.choices)
    features = models.JSONField(help_text="The inputs, with null for an imputed feature.")
    risk = models.FloatField()
    band = models.CharField(max_length=16)
    label = models.PositiveSmallIntegerField()
    model_version = models.CharField(max_length=64, help_text="The version that answered (the canary's, if it did).")
    # README: "Model registry" (shadow): the shadow version's risk for the same inputs, never shown.
    shadow_version = models.CharField(max_length=64, blank=True, default="")
    shadow_risk = models.FloatField(null=True, blank=True)
    outcome = models.PositiveSmallIntegerField(null=True, blank=True, choices=[(0, "no diabetes"), (1, "diabetes")])
    outcome_recorded_at = models.DateTimeField(null=True, blank=True)
    # Who recorded the outcome: only key- and staff-recorded outcomes feed `train --from-db`.
    outcome_source = models.CharField(max_length=16, choices=OutcomeSource.choices, blank=True, default="")
    outcome_recorded_by = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Assessment {self.public_id} ({self.risk:.0%}, {self.band})"


class OutcomeChange(models.Model):
    """Audit trail of outcomes: one row each time an outcome is recorded or changed (who, when,
    old → new). Rows are written by the service only and never edited."""

    assessment = models.ForeignKey(Assessment, on_delete=models.CASCADE, related_name="outcome_changes")
    changed_at = models.DateTimeField(db_index=True)
    changed_by = models.CharField(max_length=200)
    source = models.CharField(max_length=16, choices=Assessment.OutcomeSource.choices)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    old_outcome = models.PositiveSmallIntegerField(null=True, blank=True)
    new_outcome = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["-changed_at"]

    def __str__(self) -> str:
        old = "none" if self.old_outcome is None else self.old_outcome
        return f"{self.assessment.public_id}: {old} → {self.new_outcome} by {self.changed_by}"


class PredictionCount(models.Model):
    """How many predictions each interface answered per day, model version, band and risk tenth.

    Every interface is counted here, the V2 endpoint and the live socket too, which store no
    assessment: a row holds no measurement and no person, only a count (README: "Monitoring").
    Each process adds up its predictions in memory and writes them every few seconds from a
    background thread (``ml_engine.tally``), so a prediction never waits on the database. Rows per day
    are bounded by interfaces x versions served x bands x 10; `purge_assessments` deletes the days
    older than the retention period with the assessments."""

    day = models.DateField()
    interface = models.CharField(max_length=8)
    model_version = models.CharField(max_length=64)
    band = models.CharField(max_length=16)
    # floor(10 x risk), 0 to 9: risk from 0.0 to 0.1 is tenth 0 (a risk of 1.0 counts in tenth 9).
    risk_tenth = models.PositiveSmallIntegerField()
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "interface", "model_version", "band", "risk_tenth"], name="one_count_per_key"
            )
        ]
        indexes = [models.Index(fields=["day"], name="prediction_count_day")]

    def __str__(self) -> str:
        return f"{self.day} {self.interface} {self.model_version} {self.band}/{self.risk_tenth}: {self.count}"
