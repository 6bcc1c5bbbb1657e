"""Database records of the model registry and of the assessments made with it."""

from django.db import models
from django.db.models import Q


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


class Assessment(models.Model):
    """A stored prediction from the form or the REST API. Holds health data: see the retention
    setting and `purge_assessments`. WebSocket keystroke predictions are not stored."""

    class Interface(models.TextChoices):
        FORM = "form"
        REST = "rest"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    interface = models.CharField(max_length=8, choices=Interface.choices)
    features = models.JSONField(help_text="The inputs, with null for an imputed feature.")
    risk = models.FloatField()
    band = models.CharField(max_length=16)
    label = models.PositiveSmallIntegerField()
    model_version = models.CharField(max_length=64)
    outcome = models.PositiveSmallIntegerField(null=True, blank=True, choices=[(0, "no diabetes"), (1, "diabetes")])
    outcome_recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Assessment {self.pk} ({self.risk:.0%}, {self.band})"
