"""Realistic monitoring data for the browser test and the screenshots (README: "Monitoring"):
30 days of assessments drawn from the study's rows with a growing shift (older, heavier, higher
glucose in the last week), some outcomes, the daily prediction counts of every interface, a shadow
version (a copy of the active one under another name) whose risks, for the last 10 days, stand for a
slightly different candidate, and a staff user. Run in a server's database with
``manage.py shell -c "from tests.monitor_seed import seed; seed()"``."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from django.contrib.auth import get_user_model
from django.utils import timezone

from ml_engine import services
from ml_engine.models import Assessment, Interface, ModelArtifact, ModelVersion, PredictionCount, ServingPlan
from ml_engine.schema import FEATURE_KEYS, FEATURES
from ml_engine.tally import risk_tenth, tally
from ml_engine.training import load_dataset

STAFF_USER = "monitor-staff"
STAFF_PASSWORD = "a long password for the monitoring test"
SHADOW_VERSION = "candidate-shadow"


def _shadow_copy(now) -> str:
    """A loadable shadow version: the active one's rows under another name."""
    active = ModelVersion.objects.get(is_active=True)
    artifact = ModelArtifact.objects.get(model_version=active)
    copy = ModelVersion.objects.get(pk=active.pk)
    copy.pk, copy.version, copy.is_active, copy.activated_at = None, SHADOW_VERSION, False, None
    copy.save()
    ModelArtifact.objects.create(model_version=copy, content=bytes(artifact.content), size=artifact.size)
    ServingPlan.objects.create(
        changed_at=now - timedelta(days=10), changed_by="ops (manage.py)", shadow_version=SHADOW_VERSION
    )
    return SHADOW_VERSION


def seed(days: int = 30, per_day: int = 40, seed: int = 7) -> None:
    get_user_model().objects.create_user(STAFF_USER, password=STAFF_PASSWORD, is_staff=True)
    rng = np.random.default_rng(seed)
    X = load_dataset().X
    now = timezone.now()
    glucose, bmi, age = (FEATURE_KEYS.index(k) for k in ("glucose", "bmi", "age"))
    counts: dict[tuple, int] = {}
    shadow = _shadow_copy(now)
    for day in range(days):
        drift = max(0.0, (14 - day) / 14)  # none a fortnight ago, growing to today
        rows = X[rng.integers(0, len(X), per_day + rng.integers(-10, 10))].copy()
        rows[:, glucose] += 18 * drift + rng.normal(0, 4, len(rows))
        rows[:, bmi] += 3 * drift
        rows[:, age] += np.round(5 * drift)
        for j, feature in enumerate(FEATURES):
            rows[:, j] = np.clip(rows[:, j], feature.min, feature.max)
            if feature.integer:
                rows[:, j] = np.round(rows[:, j])
        instances = [
            {key: (None if np.isnan(v) else float(v)) for key, v in zip(FEATURE_KEYS, row, strict=True)} for row in rows
        ]
        predictions = services.predict_many(instances=instances, interface=Interface.REST, contributions=False)
        when = now - timedelta(days=day, hours=float(rng.uniform(0, 2)))
        half = len(predictions) // 3
        stored = services.assessments_create(predictions=predictions[:half], interface=Interface.FORM)
        stored += services.assessments_create(predictions=predictions[half:], interface=Interface.REST)
        Assessment.objects.filter(pk__in=[a.pk for a in stored]).update(created_at=when)
        if day < 10:  # the shadow was set 10 days ago
            for a in stored:
                shadow_risk = float(np.clip(a.risk + rng.normal(0.01, 0.04), 0.0, 1.0))
                Assessment.objects.filter(pk=a.pk).update(shadow_version=shadow, shadow_risk=shadow_risk)
        if day >= 7:  # outcomes come back later: only older assessments have one
            for a in stored[: len(stored) // 2]:
                Assessment.objects.filter(pk=a.pk).update(
                    outcome=int(rng.random() < a.risk * 0.9), outcome_source="api_key"
                )
        interface_of = ["form"] * half + ["rest"] * (len(predictions) - half)
        extra = [("ws", p) for p in predictions for _ in range(3)] + [("v2", p) for p in predictions[::2]]
        for interface, p in [*zip(interface_of, predictions, strict=True), *extra]:
            key = (when.date(), interface, p.model_version, p.band, risk_tenth(p.risk))
            counts[key] = counts.get(key, 0) + 1
    tally.reset()  # the seeding's own predictions are not traffic: the counts below stand for it
    PredictionCount.objects.bulk_create(
        PredictionCount(day=d, interface=i, model_version=v, band=b, risk_tenth=t, count=n)
        for (d, i, v, b, t), n in counts.items()
    )
