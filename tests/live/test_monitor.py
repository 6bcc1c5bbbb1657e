"""The staff monitoring page and the drift gauges of /metrics (README: "Monitoring"): who may see
the page, the page with no data at all and with data, and the gauges' bounded label set."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from ml_engine import services
from ml_engine.models import Assessment, Interface, PredictionCount
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
