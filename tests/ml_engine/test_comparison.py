"""`models compare A B` and ``versions_compare`` (README: "Comparing versions"): agreement on the
same stored assessments, and AUC, Brier and calibration on trusted outcomes with paired bootstrap
intervals, refusing to estimate from too few outcomes."""

import io

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from sklearn.metrics import roc_auc_score

from ml_engine import services
from ml_engine.comparison import MIN_OUTCOMES, paired_bootstrap, versions_compare
from ml_engine.models import Assessment, Interface
from ml_engine.registry import ArtifactError
from ml_engine.schema import FEATURES
from ml_engine.training import load_dataset


def store_people(rows: range, *, source: str | None = "api_key") -> None:
    """Store CSV people as assessments, with their real outcome recorded by ``source`` (None: no outcome)."""
    data = load_dataset()
    Assessment.objects.bulk_create(
        Assessment(
            interface=Interface.REST,
            features={f.key: None if x != x else float(x) for f, x in zip(FEATURES, data.X[i], strict=True)},
            risk=0.5,
            band="high",
            label=1,
            model_version="v",
            outcome=None if source is None else int(data.y[i]),
            outcome_source=source or "",
        )
        for i in rows
    )


@pytest.fixture
def other_version(served_model, db):
    """A second, different version: trained with 40 more (duplicated, flipped) database rows, not active."""
    data = load_dataset()
    Assessment.objects.bulk_create(
        Assessment(
            interface=Interface.REST,
            features={f.key: None if x != x else float(x) for f, x in zip(FEATURES, data.X[i], strict=True)},
            risk=0.5,
            band="high",
            label=1,
            model_version="v",
            outcome=int(1 - data.y[i]),
            outcome_source="staff",
        )
        for i in range(40)
    )
    record, _ = services.model_train(quick=True, from_db=True, activate=False)
    Assessment.objects.all().delete()
    return record.version


def test_a_version_against_itself_agrees_exactly(served_model):
    store_people(range(50))
    c = versions_compare(a=served_model.version, b=served_model.version, draws=50)
    assert c.assessments == 50 and c.mean_abs_difference == 0 and c.band_flips == 0 and c.band_flip_share == 0
    assert c.outcomes == 50 and c.enough_outcomes
    for figure in c.figures:
        assert figure.difference.estimate == 0 and figure.difference.low == 0 and figure.difference.high == 0


def test_two_versions_on_trusted_outcomes(served_model, other_version):
    store_people(range(100, 220))  # 120 with a key-recorded outcome
    store_people(range(300, 340), source="unverified")  # outcomes of unknown origin: not used
    store_people(range(400, 440), source=None)  # no outcome: agreement only
    c = versions_compare(a=served_model.version, b=other_version, draws=200, seed=1)
    assert c.assessments == 200 and c.outcomes == 120
    data = load_dataset()
    assert c.positives == int(data.y[100:220].sum())
    assert 0 < c.mean_abs_difference <= c.max_abs_difference
    assert c.band_flips == sum(c.band_changes.values()) and c.band_flip_share == c.band_flips / 200
    figures = {f.name: f for f in c.figures}
    assert set(figures) == {"roc_auc", "brier", "calibration_slope", "calibration_intercept"}
    # The point estimates are the plain figures on the 120 outcomes, by another route.
    rows = Assessment.objects.filter(outcome_source="api_key").order_by("-created_at", "-pk")
    X = np.array([[np.nan if r.features[f.key] is None else r.features[f.key] for f in FEATURES] for r in rows])
    y = np.array([r.outcome for r in rows])
    p_a = served_model.model.predict_matrix(X, contributions=False)[0]
    assert figures["roc_auc"].a.estimate == pytest.approx(roc_auc_score(y, p_a))
    assert figures["brier"].a.estimate == pytest.approx(np.mean((p_a - y) ** 2))
    for f in c.figures:
        for interval in (f.a, f.b, f.difference):
            assert interval.low <= interval.estimate <= interval.high
        assert f.difference.estimate == pytest.approx(f.b.estimate - f.a.estimate)
    # Seeded: the same call gives the same intervals.
    assert versions_compare(a=served_model.version, b=other_version, draws=200, seed=1) == c


def test_the_most_recent_assessments_only(served_model):
    store_people(range(60))
    c = versions_compare(a=served_model.version, b=served_model.version, limit=10, draws=20)
    assert c.assessments == 10 and c.limit == 10
    with pytest.raises(ValueError):
        versions_compare(a=served_model.version, b=served_model.version, limit=10**6)


def test_too_few_outcomes_are_named_not_estimated(served_model):
    store_people(range(MIN_OUTCOMES - 1))
    c = versions_compare(a=served_model.version, b=served_model.version)
    assert c.outcomes == MIN_OUTCOMES - 1 and not c.enough_outcomes and c.figures == []
    assert "Too few recorded outcomes" in c.note and str(MIN_OUTCOMES) in c.note


def test_no_assessments_at_all(served_model):
    c = versions_compare(a=served_model.version, b=served_model.version)
    assert c.assessments == 0 and c.mean_abs_difference is None and "No stored assessments" in c.note


def test_an_unknown_version_is_refused_in_words(served_model):
    with pytest.raises(ArtifactError, match="No model version 'nope'; known versions:"):
        versions_compare(a=served_model.version, b="nope")


def test_paired_bootstrap_is_seeded_and_paired():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, 300)
    y = (rng.random(300) < p).astype(int)
    q = np.clip(p + rng.normal(0, 0.1, 300), 0.01, 0.99)
    one = paired_bootstrap(y, p, q, draws=100, seed=4)
    assert one == paired_bootstrap(y, p, q, draws=100, seed=4)
    assert one != paired_bootstrap(y, p, q, draws=100, seed=5)
    # Paired: B - A of identical risks is exactly 0 in every resample.
    assert all(f.difference.low == f.difference.high == 0 for f in paired_bootstrap(y, p, p, draws=50))


def test_the_command_prints_agreement_and_figures(served_model, other_version):
    store_people(range(100, 160))
    out = io.StringIO()
    call_command("models", "compare", served_model.version, other_version, "--bootstrap", "50", stdout=out)
    text = out.getvalue()
    assert "Scored: the 60 most recent stored assessments (at most 5000)" in text
    assert "band flips" in text and "Outcomes recorded by an API key or staff among them: 60" in text
    assert "Paired bootstrap: 50 resamples of these 60 outcomes" in text
    for name in ("roc_auc", "brier", "calibration_slope", "calibration_intercept"):
        assert name in text
    assert "Only 60 outcomes" in text


def test_the_command_says_when_outcomes_are_too_few(served_model):
    store_people(range(5))
    out = io.StringIO()
    call_command("models", "compare", served_model.version, served_model.version, stdout=out)
    assert "Too few recorded outcomes for AUC, Brier or calibration: 5 (at least 30" in out.getvalue()


def test_the_command_refuses_bad_arguments(served_model):
    with pytest.raises(CommandError, match="needs two versions"):
        call_command("models", "compare", served_model.version, stdout=io.StringIO())
    with pytest.raises(CommandError, match="No model version 'nope'"):
        call_command("models", "compare", served_model.version, "nope", stdout=io.StringIO())
    with pytest.raises(CommandError, match="--limit must be 1 to 5000"):
        call_command("models", "compare", "a", "b", "--limit", "0", stdout=io.StringIO())
