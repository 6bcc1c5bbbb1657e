"""Monitoring figures (README: "Monitoring"): the PSI and missing rates against a hand computation
on a small fixture, the windows, the prediction counts every interface writes, their bound and their
retention, and the reliability bins."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from ml_engine import monitoring, services
from ml_engine.models import Assessment, Interface, PredictionCount
from ml_engine.schema import FEATURE_KEYS
from ml_engine.tally import MAX_PENDING_KEYS, Tally, tally

# Training fixture: glucose 80, 90, ..., 150 (eight women); age 30 for all. With four quantile bins
# the glucose cuts are 97.5, 115 and 132.5 (numpy's linear quantiles) and each bin holds two women.
TRAINING = np.full((8, len(FEATURE_KEYS)), np.nan)
TRAINING[:, FEATURE_KEYS.index("glucose")] = [80, 90, 100, 110, 120, 130, 140, 150]
TRAINING[:, FEATURE_KEYS.index("age")] = 30


def _store(glucose, *, days_ago=0.0):
    features = dict.fromkeys(FEATURE_KEYS)
    features.update(glucose=glucose, age=30)
    assessment = Assessment.objects.create(
        interface="rest", features=features, risk=0.3, band="moderate", label=0, model_version="v"
    )
    if days_ago:
        Assessment.objects.filter(pk=assessment.pk).update(created_at=timezone.now() - timedelta(days=days_ago))
    return assessment


def test_the_reference_bins_of_the_fixture():
    reference = monitoring.reference_from_matrix(TRAINING, bins=4)
    assert reference.edges["glucose"] == (97.5, 115.0, 132.5)
    assert reference.expected["glucose"] == (0.25, 0.25, 0.25, 0.25)
    assert reference.missing["glucose"] == 0.0 and reference.missing["bmi"] == 1.0


@pytest.mark.django_db
def test_psi_and_missing_rate_match_a_hand_computation():
    reference = monitoring.reference_from_matrix(TRAINING, bins=4)
    # Last 7 days: eight glucose values, one missing. Bins (<= 97.5, to 115, to 132.5, above):
    # 85, 95, 97.5, 90 | 100, 115 | 120 | 150 -> shares 1/2, 1/4, 1/8, 1/8 (the cuts are right-closed).
    for value in (85, 95, 97.5, 90, 100, 115, 120, 150, None):
        _store(value)
    _store(140, days_ago=10)  # in the 30-day window only
    _store(80, days_ago=40)  # in neither
    now = timezone.now()

    week = monitoring.drift(days=7, now=now, reference=reference)
    glucose = {f.key: f for f in week.features}["glucose"]
    # By hand: (1/2 - 1/4) ln 2 + 0 + 2 x (1/8 - 1/4) ln(1/2) = 1/4 ln 2 + 1/4 ln 2 = 1/2 ln 2.
    assert glucose.psi == pytest.approx(0.5 * math.log(2), abs=1e-12)
    assert glucose.psi == pytest.approx(0.34657359, abs=1e-8)
    assert glucose.actual == (0.5, 0.25, 0.125, 0.125)
    assert (week.rows, glucose.present, glucose.missing_rate) == (9, 8, pytest.approx(1 / 9))
    assert glucose.reading == "too few to tell (under 100)"

    month = monitoring.drift(days=30, now=now, reference=reference)
    glucose = {f.key: f for f in month.features}["glucose"]
    # Nine values now: 4, 2, 1, 2 in the bins -> shares 4/9, 2/9, 1/9, 2/9 against 1/4 each:
    # (4/9 - 1/4) ln(16/9) + 2 x (2/9 - 1/4) ln(8/9) + (1/9 - 1/4) ln(4/9)
    # = 7/36 ln(16/9) - 2/36 ln(8/9) - 5/36 ln(4/9) = 0.23104906...
    by_hand = 7 / 36 * math.log(16 / 9) - 2 / 36 * math.log(8 / 9) - 5 / 36 * math.log(4 / 9)
    assert glucose.psi == pytest.approx(by_hand, abs=1e-12)
    assert glucose.psi == pytest.approx(0.231049, abs=1e-6)
    assert (month.rows, glucose.present) == (10, 9)
    # Every age equals the training's single value: no drift. BMI was never given: no PSI at all.
    by_key = {f.key: f for f in month.features}
    assert by_key["age"].psi == pytest.approx(0.0)
    assert by_key["bmi"].psi is None and by_key["bmi"].missing_rate == 1.0 and by_key["bmi"].reading == "no data"


@pytest.mark.django_db
def test_a_window_aggregates_only_its_newest_rows_when_it_is_cut():
    reference = monitoring.reference_from_matrix(TRAINING, bins=4)
    for hours, value in ((30, 150), (20, 150), (10, 85), (1, 85)):
        _store(value, days_ago=hours / 24)
    window = monitoring.drift(days=7, now=timezone.now(), reference=reference, max_rows=2)
    glucose = {f.key: f for f in window.features}["glucose"]
    assert window.cut and window.rows == 2 and glucose.actual == (1.0, 0.0, 0.0, 0.0)


def test_psi_readings_and_the_floor_for_empty_bins():
    assert monitoring.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    # An empty bin counts as 0.0001, not as an infinite difference.
    assert monitoring.psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5 * math.log(2) + 0.4999 * math.log(0.5 / 0.0001))
    assert monitoring.psi_reading(0.05, 500) == "stable"
    assert monitoring.psi_reading(0.1, 500) == "moderate shift"
    assert monitoring.psi_reading(0.25, 500) == "moderate shift"
    assert monitoring.psi_reading(0.26, 500) == "major shift"
    assert monitoring.psi_reading(0.9, 99) == "too few to tell (under 100)"


def test_the_study_reference_is_the_768_women_in_deciles():
    reference = monitoring.study_reference()
    assert reference.rows == 768
    assert len(reference.edges["glucose"]) == 9  # ten bins
    assert len(reference.edges["pregnancies"]) < 9  # whole numbers: equal deciles merge
    for key in FEATURE_KEYS:
        assert sum(reference.expected[key]) == pytest.approx(1.0)
    assert reference.missing["insulin"] == pytest.approx(374 / 768)


@pytest.mark.django_db
def test_every_interface_is_counted_by_day_band_and_risk_tenth(served_model):
    tally.reset()
    person = {"glucose": 148, "bmi": 33.6, "age": 50}
    one = services.predict(features=person, interface=Interface.FORM)
    services.predict_many(instances=[person, {"glucose": 85, "age": 22}], interface=Interface.REST)
    batch = services.predict_risks(matrix=np.array([[1, 85, 66, 29, 94, 26.6, 0.351, 31]] * 3), interface=Interface.V2)
    assert PredictionCount.objects.count() == 0  # nothing is written by a prediction itself
    assert tally.flush() > 0
    rows = {
        (r.interface, r.band, r.risk_tenth): r.count for r in PredictionCount.objects.filter(day=timezone.now().date())
    }
    assert rows[("form", one.band, int(one.risk * 10))] == 1
    assert sum(n for (interface, _, _), n in rows.items() if interface == "rest") == 2
    v2_tenth = int(float(batch.risks[0]) * 10)
    assert rows[("v2", services.band_for(float(batch.risks[0]), served_model.bands), v2_tenth)] == 3
    assert set(PredictionCount.objects.values_list("model_version", flat=True)) == {served_model.version}
    # A second flush adds to the same rows.
    services.predict(features=person, interface=Interface.FORM)
    tally.flush()
    assert PredictionCount.objects.get(interface="form", risk_tenth=int(one.risk * 10)).count == 2
    report = monitoring.served(days=30, now=timezone.now())
    assert report.interfaces == {"form": 2, "rest": 2, "v2": 3, "ws": 0}
    assert report.total == 7 and sum(report.tenths) == 7 and sum(report.bands.values()) == 7


def test_pending_counts_are_bounded():
    bounded = Tally()
    for i in range(MAX_PENDING_KEYS + 50):
        bounded.add(interface="rest", model_version=f"v{i}", band="low", risk=0.1)
    assert len(bounded.pending()) == MAX_PENDING_KEYS and bounded.dropped == 50
    bounded.add(interface="rest", model_version="v0", band="low", risk=0.1)  # a known key still counts
    assert bounded.pending()[next(k for k in bounded.pending() if k[2] == "v0")] == 2


@pytest.mark.django_db
def test_purge_deletes_old_prediction_counts_with_the_assessments():
    today = timezone.now().date()
    for age in (0, 9, 11):
        PredictionCount.objects.create(
            day=today - timedelta(days=age), interface="ws", model_version="v", band="low", risk_tenth=1, count=5
        )
    call_command("purge_assessments", "--days", "10")
    assert sorted((today - day).days for day in PredictionCount.objects.values_list("day", flat=True)) == [0, 9]


@pytest.mark.django_db
def test_reliability_bins_count_outcomes_in_the_database():
    for risk, outcome in ((0.05, 0), (0.08, 1), (0.35, 1), (0.31, 0), (0.33, 1), (1.0, 1), (0.5, None)):
        source = "" if outcome is None else "api_key"
        Assessment.objects.create(
            interface="rest",
            features={},
            risk=risk,
            band="low",
            label=0,
            model_version="v",
            outcome=outcome,
            outcome_source=source,
        )
    # An outcome of unknown origin (recorded before keys existed) is left out, as training leaves it out.
    Assessment.objects.create(
        interface="rest",
        features={},
        risk=0.05,
        band="low",
        label=0,
        model_version="v",
        outcome=1,
        outcome_source="unverified",
    )
    calibration = monitoring.calibration(now=timezone.now())
    bins = {round(b.low, 1): b for b in calibration.bins}
    assert calibration.outcomes == 6
    assert (bins[0.0].n, bins[0.0].observed, bins[0.0].mean_risk) == (2, 0.5, pytest.approx(0.065))
    assert (bins[0.3].n, bins[0.3].observed) == (3, pytest.approx(2 / 3))
    assert (bins[0.9].n, bins[0.9].observed) == (1, 1.0)  # a risk of 1.0 is in the top bin
    assert bins[0.5].n == 0 and bins[0.5].observed is None
    # ECE by hand: (2 |0.5 - 0.065| + 3 |2/3 - 0.33| + 1 |1 - 1|) / 6
    assert calibration.ece == pytest.approx((2 * 0.435 + 3 * abs(2 / 3 - 0.33)) / 6)


@pytest.mark.django_db
def test_the_figures_are_computed_at_most_once_per_cache_period(settings, django_assert_num_queries):
    settings.MONITOR_CACHE_SECONDS = 60
    monitoring.forget_cached_report()
    try:
        first = monitoring.cached_report()
        _store(120)
        with django_assert_num_queries(0):  # a second page view or scrape within the minute reads nothing
            assert monitoring.cached_report() is first
        monitoring.forget_cached_report()
        assert monitoring.cached_report().drift[0].rows == first.drift[0].rows + 1
    finally:
        monitoring.forget_cached_report()
