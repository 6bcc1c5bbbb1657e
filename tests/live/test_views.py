import re

import pytest

from ml_engine.models import Assessment
from ml_engine.schema import FEATURES
from ml_engine.services import predict

VALID = {
    "pregnancies": "2",
    "glucose": "148",
    "blood_pressure": "72",
    "skin_thickness": "",
    "insulin": "",
    "bmi": "33.6",
    "diabetes_pedigree": "0.627",
    "age": "50",
}


def errors_in(html: str) -> list[str]:
    return re.findall(r'class="error" role="alert">([^<]+)<', html)


def test_form_is_generated_from_the_schema(client, served_model):
    html = client.get("/").content.decode()
    for f in FEATURES:
        tag = re.search(rf'<input[^>]*name="{f.key}"[^>]*>', html).group(0)
        assert 'type="number"' in tag
        assert f'min="{f.min:g}"' in tag and f'max="{f.max:g}"' in tag and f'step="{f.step:g}"' in tag
        assert f.label.replace("&", "&amp;") in html and f.description in html
    assert 'name="viewport"' in html
    assert "csrfmiddlewaretoken" in html


def test_valid_submission_shows_the_result_and_stores_it(client, served_model):
    response = client.post("/predict/", VALID)
    assert response.status_code == 200
    html = response.content.decode()
    expected = predict(
        features={
            "pregnancies": 2,
            "glucose": 148,
            "blood_pressure": 72,
            "bmi": 33.6,
            "diabetes_pedigree": 0.627,
            "age": 50,
        }
    )
    assert f"{round(100 * expected.risk, 1)}%" in html
    assert f"<strong>{expected.band}</strong>" in html
    assert "not a diagnosis" in html and "Pima" in html
    assert html.count('<svg class="bar-svg"') == 8  # one contribution bar per feature
    assert "not given (estimated)" in html  # skin thickness and insulin were left empty
    stored = Assessment.objects.get()
    assert stored.interface == "form" and stored.risk == pytest.approx(expected.risk)
    assert stored.features["skin_thickness"] is None


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("glucose", "abc", "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL."),
        ("glucose", "nan", "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL."),
        ("glucose", "inf", "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL."),
        ("glucose", "1e999", "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL."),
        ("glucose", "0", "Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL; got 0.0."),
        ("bmi", "9" * 5000, "Body mass index must be a number from 10 to 90 kg/m²"),
        ("age", "33.5", "Age must be a whole number from 18 to 120; got 33.5."),
    ],
)
def test_invalid_values_rerender_with_an_error_under_the_field(client, served_model, field, value, message):
    response = client.post("/predict/", {**VALID, field: value})
    assert response.status_code == 400
    html = response.content.decode()
    (error,) = errors_in(html)
    assert error.startswith(message.replace("&", "&amp;"))
    assert re.search(rf'name="{field}"', html)
    assert Assessment.objects.count() == 0
    # the other values are kept so nothing the person typed is lost
    assert 'value="148"' in html or field == "glucose"


def test_empty_submission_asks_for_one_value(client, served_model):
    response = client.post("/predict/", {})
    assert response.status_code == 400
    assert "Fill in at least one measurement" in response.content.decode()


def test_huge_body_is_refused_without_a_500(client, served_model):
    response = client.post("/predict/", {"glucose": "1" * 3_000_000})
    assert response.status_code == 400


def test_get_predict_is_refused(client, served_model):
    assert client.get("/predict/?glucose=120").status_code == 405


def test_csrf_is_enforced(served_model):
    from django.test import Client

    response = Client(enforce_csrf_checks=True).post("/predict/", VALID)
    assert response.status_code == 403


def test_model_card_shows_metrics_plots_and_limitations(client, served_model):
    html = client.get("/model/").content.decode()
    assert served_model.version in html
    for text in ("ROC AUC", "Brier", "ROC curve", "Calibration", "Pima", "not a diagnosis", "768"):
        assert text in html
    assert html.count("<polyline") == 2
    assert "cdn" not in html.lower()


def test_model_missing_gives_503_not_500(client, db):
    from ml_engine.models import ModelVersion
    from ml_engine.registry import active_model

    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    response = client.post("/predict/", VALID)
    assert response.status_code == 503
    assert "manage.py train" in response.content.decode()
