"""The staff monitoring page and the drift gauges of /metrics (README: "Monitoring"): who may see
the page, the page with no data at all and with data, and the gauges' bounded label set."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from ml_engine import monitoring, services
from ml_engine.models import Assessment, Interface, PredictionCount, ServingPlan
from ml_engine.schema import FEATURE_KEYS
from ml_engine.tally import tally

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, django_user_model):
    user = django_user_model.objects.create_user("nurse", password="a long staff password", is_staff=True)
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/monitor/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/monitor/"


def test_a_signed_in_user_who_is_not_staff_gets_the_403_page(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("visitor", password="another long password"))
    response = client.get("/monitor/")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("text/html")
    text = response.content.decode()
    assert "<h1>This page is for staff only</h1>" in text and "site-header" in text
    assert "PSI" not in text


def test_staff_see_the_page_with_no_data_at_all(staff):
    response = staff.get("/monitor/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    text = response.content.decode()
    assert "Last 7 days: 0 assessments" in text and "Last 30 days: 0 assessments" in text
    assert text.count("no data") >= 2 * len(FEATURE_KEYS)
    assert "No predictions have been counted in the last 30 days." in text
    assert "No outcome has been recorded" in text
    assert "Last 30 days: <strong>0</strong> predictions" in text


def test_staff_see_drift_counts_and_calibration(staff, served_model):
    tally.reset()
    people = [{"glucose": 90 + i, "bmi": 25 + i / 10, "age": 25 + i % 40} for i in range(120)]
    predictions = services.predict_many(instances=people, interface=Interface.REST)
    stored = services.assessments_create(predictions=predictions, interface=Interface.REST)
    for assessment in stored[:30]:
        Assessment.objects.filter(pk=assessment.pk).update(outcome=int(assessment.risk > 0.3), outcome_source="staff")
    services.predict(features={"glucose": 150, "age": 60}, interface=Interface.WS)
    tally.flush()
    text = staff.get("/monitor/").content.decode()
    assert "Last 7 days: 120 assessments" in text
    psi = re.search(
        r'<th scope="row">Plasma glucose \(2-h OGTT\) <span class="num">[^<]*</span></th>\s*<td class="psi-cell">\s*'
        r'<span class="psi-value">([0-9.]+)</span>',
        text,
    )
    assert psi and float(psi[1]) > 0.25  # glucose 90 to 209, against the study's spread
    assert "major shift" in text and "100.0\u00a0%" in text  # skin fold, insulin, pedigree: all missing
    assert "Last 30 days: <strong>121</strong> predictions" in text
    assert "On the 30 stored assessments with an outcome recorded" in text
    assert '<desc id="bands-desc">' in text and '<desc id="tenths-desc">' in text
    assert PredictionCount.objects.filter(interface="ws").exists()
    versions = re.search(r"<code>([^<]+)</code></th>((?:<td[^>]*>[^<]*</td>)+)</tr>", text)
    assert versions and versions[1] == served_model.version
    assert re.findall(r">([^<]*)</td>", versions[2]) == ["0", "120", "0", "1", "121 (100.0\u00a0%)"]


def test_metrics_carry_the_drift_gauges_for_8_features_and_2_windows(client, served_model, settings):
    settings.METRICS_TOKEN = "operator-token-for-tests"
    now = timezone.now()
    features = dict.fromkeys(FEATURE_KEYS)
    features.update(glucose=148, age=50)
    Assessment.objects.create(interface="form", features=features, risk=0.5, band="high", label=1, model_version="v")
    text = client.get("/metrics", HTTP_AUTHORIZATION="Bearer operator-token-for-tests").content.decode()
    psi = re.findall(r'^diabetes_input_psi\{feature="(\w+)",window="(\w+)"\} (\S+)$', text, re.MULTILINE)
    missing = re.findall(r'^diabetes_input_missing_ratio\{feature="(\w+)",window="(\w+)"\} (\S+)$', text, re.MULTILINE)
    assert {(f, w) for f, w, _ in psi} == {(key, w) for key in FEATURE_KEYS for w in ("7d", "30d")}
    assert {(f, w) for f, w, _ in missing} == {(key, w) for key in FEATURE_KEYS for w in ("7d", "30d")}
    values = {(f, w): float(v) for f, w, v in missing}
    assert values[("glucose", "7d")] == 0.0 and values[("insulin", "30d")] == 1.0
    assert {(f, w): v for f, w, v in psi}[("insulin", "7d")] == "NaN"  # no value: no index
    assert re.search(r'^diabetes_monitored_assessments\{window="7d"\} 1\.0$', text, re.MULTILINE)
    stamp = re.search(r"^diabetes_monitoring_computed_timestamp_seconds (\S+)$", text, re.MULTILINE)
    assert stamp and abs(float(stamp[1]) - now.timestamp()) < 60


def _assessment(*, risk, band, shadow_risk=None, shadow="v-shadow", version="v-active"):
    features = dict.fromkeys(FEATURE_KEYS)
    features.update(glucose=120, age=40)
    return Assessment.objects.create(
        interface="rest",
        features=features,
        risk=risk,
        band=band,
        label=int(risk >= 0.5),
        model_version=version,
        shadow_version=shadow if shadow_risk is not None else "",
        shadow_risk=shadow_risk,
    )


def test_shadow_agreement_matches_a_hand_computation(staff):
    # Bands as trained: low [0, 0.2), moderate [0.2, 0.5), high [0.5, 1].
    _assessment(risk=0.10, band="low", shadow_risk=0.12)  # |gap| 0.02, same band
    _assessment(risk=0.18, band="low", shadow_risk=0.22)  # 0.04, low -> moderate: a flip
    _assessment(risk=0.45, band="moderate", shadow_risk=0.55)  # 0.10, moderate -> high: a flip
    _assessment(risk=0.70, band="high", shadow_risk=0.64)  # 0.06, same band
    _assessment(risk=0.99, band="high", shadow_risk=1.0)  # 0.01, a risk of 1 is high: same band
    _assessment(risk=0.30, band="moderate")  # not scored by the shadow: left out
    old = _assessment(risk=0.30, band="moderate", shadow_risk=0.90)  # 10 days old: only in 30 days
    Assessment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=10))
    report = monitoring.monitor_report()
    week, month = report.shadow
    (pair,) = week.pairs
    assert (pair.model_version, pair.shadow_version, pair.n, pair.flips) == ("v-active", "v-shadow", 5, 2)
    assert pair.mean_gap == pytest.approx((0.02 + 0.04 + 0.10 + 0.06 + 0.01) / 5)
    assert pair.max_gap == pytest.approx(0.10)
    assert pair.flip_share == pytest.approx(0.4)
    (pair,) = month.pairs
    assert (pair.n, pair.flips) == (6, 3)
    assert pair.mean_gap == pytest.approx((0.02 + 0.04 + 0.10 + 0.06 + 0.01 + 0.60) / 6)
    assert pair.max_gap == pytest.approx(0.60)
    monitoring.forget_cached_report()
    text = staff.get("/monitor/").content.decode()
    assert '<h2 id="shadow-title">Shadow and canary</h2>' in text
    assert re.search(
        r'<th scope="row">last 7 days <span class="num">answered by <code>v-active</code>, shadow <code>v-shadow</code>'
        r'</span></th><td class="num">5</td><td class="num">4.60\u00a0%</td><td class="num">10.00\u00a0%</td>'
        r'<td class="num">2 \(40.0\u00a0%\)</td>',
        text,
    )
    assert '<th scope="row">last 30 days <span class="num">answered by <code>v-active</code>' in text


def test_shadow_and_canary_empty_states_and_the_plan_in_force(staff):
    monitoring.forget_cached_report()
    text = staff.get("/monitor/").content.decode()
    assert "none: no shadow is set" in text and "none: no canary is set" in text
    assert "No shadow is set, and no stored assessment of the last 30 days was scored by one." in text
    assert "Plan set" not in text
    ServingPlan.objects.create(
        changed_at=timezone.now(),
        changed_by="ops (manage.py)",
        shadow_version="v-new",
        canary_version="v-cand",
        canary_share=0.1,
    )
    monitoring.forget_cached_report()
    text = staff.get("/monitor/").content.decode()
    assert "<dt>Shadow</dt><dd><code>v-new</code></dd>" in text
    assert "<code>v-cand</code>, answering 10\u00a0% of new sessions and requests" in text
    assert "by ops (manage.py)" in text
    assert "No assessments scored by the shadow yet in the last 30 days." in text
    assert 'href="#served-title"' in text and "manage.py models compare" in text


def test_the_shadow_section_is_staff_only_too(client, django_user_model):
    _assessment(risk=0.10, band="low", shadow_risk=0.12)
    assert client.get("/monitor/").status_code == 302
    client.force_login(django_user_model.objects.create_user("visitor2", password="another long password"))
    response = client.get("/monitor/")
    assert response.status_code == 403 and "v-shadow" not in response.content.decode()
