import re

import pytest
from prometheus_client import REGISTRY

from ml_engine.models import Assessment, Interface
from ml_engine.schema import CLINICAL_CUTOFFS, FEATURES, clean_features
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
# VALID as the service receives it: numbers, blank fields left out.
VALID_FEATURES = {key: float(value) for key, value in VALID.items() if value}


def errors_in(html: str) -> list[str]:
    return re.findall(r'<p class="error" id="id_\w+_error">([^<]+)<', html)


def test_form_is_generated_from_the_schema(client, served_model):
    html = client.get("/").content.decode()
    for f in FEATURES:
        tag = re.search(rf'<input[^>]*name="{f.key}"[^>]*>', html).group(0)
        # Text with a numeric keyboard: a number input would hide "33,6" from the page.
        assert 'type="text"' in tag and f'inputmode="{"numeric" if f.integer else "decimal"}"' in tag
        assert f'data-min="{f.min:g}"' in tag and f'data-max="{f.max:g}"' in tag
        assert f.label.replace("&", "&amp;") in html and f.description.replace("'", "&#x27;") in html
        # The help text is linked to its field by an id that exists.
        (described,) = re.findall(r'aria-describedby="([^"]+)"', tag)
        assert f'id="{described}"' in html
    assert html.count("Don't know? Leave it blank: it is estimated.") == sum(f.lab_only for f in FEATURES)
    assert 'name="viewport"' in html
    assert "csrfmiddlewaretoken" in html
    assert "<script>" not in html and "style=" not in html  # scripts and styles are static files


def test_invalid_field_is_linked_to_its_error(client, served_model):
    html = client.post("/predict/", {**VALID, "glucose": "abc"}).content.decode()
    tag = re.search(r'<input[^>]*name="glucose"[^>]*>', html).group(0)
    assert 'aria-invalid="true"' in tag
    assert 'aria-describedby="id_glucose_helptext id_glucose_error"' in tag
    assert 'id="id_glucose_error"' in html
    assert '<a href="#id_glucose">' in html  # the summary at the top links to the field


def test_a_decimal_comma_is_a_decimal_point(client, served_model):
    response = client.post("/predict/", {**VALID, "bmi": "33,6"})
    assert response.status_code == 200
    assert Assessment.objects.get().features["bmi"] == pytest.approx(33.6)
    assert "33.6 kg/m²" in response.content.decode()


@pytest.mark.parametrize("typed", ["1,000", "3,3,6", "33.6,1"])
def test_an_unclear_comma_is_refused_with_a_message(client, served_model, typed):
    response = client.post("/predict/", {**VALID, "insulin": typed})
    assert response.status_code == 400
    (error,) = errors_in(response.content.decode())
    assert "comma" in error
    assert Assessment.objects.count() == 0


def test_glucose_in_mmol_per_litre_is_converted_at_the_edge(client, served_model):
    response = client.post("/predict/", {**VALID, "glucose": "8,2", "glucose_unit": "mmol/L"})
    assert response.status_code == 200
    stored = Assessment.objects.get()
    assert stored.features["glucose"] == pytest.approx(147.7)  # 8.2 x 18.016, the model's mg/dL
    assert "8.2 mmol/L (147.7 mg/dL)" in response.content.decode()


def test_the_result_speaks_in_points_percentages_and_values_as_typed(client, served_model):
    html = client.post("/predict/", VALID).content.decode()
    expected = predict(features=VALID_FEATURES, interface=Interface.FORM)
    glucose_points = expected.points["glucose"]
    assert f"Plasma glucose (2-h OGTT) adds about {abs(glucose_points):.0f} points" in html
    assert "148 mg/dL" in html and "148.0" not in html
    assert "log-odds" not in html
    assert f"{100 * expected.threshold:.0f}%" in html  # the threshold as a percentage


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [("glucose", "250", "range used to diagnose diabetes"), ("blood_pressure", "125", "hypertensive crisis")],
)
def test_alarming_values_say_see_a_clinician(client, served_model, field, value, words):
    html = client.post("/predict/", {**VALID, field: value}).content.decode()
    assert "Please see a clinician" in html and words in html


def test_an_age_beyond_the_training_data_is_explained(client, served_model):
    html = client.post("/predict/", {**VALID, "age": "110"}).content.decode()
    assert "does not mean that age lowers or raises your risk" in html


def test_valid_submission_shows_the_result_and_stores_it(client, served_model):
    response = client.post("/predict/", VALID)
    assert response.status_code == 200
    html = response.content.decode()
    expected = predict(features=VALID_FEATURES, interface=Interface.FORM)
    assert f"{round(100 * expected.risk, 1)}%" in html
    assert f"<strong>{expected.band}</strong>" in html
    assert "not a diagnosis" in html and "Pima" in html
    assert html.count('class="bar ') == 8
    assert "Please see a clinician" not in html
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


def test_a_refused_form_is_counted_as_an_invalid_form_input(client, served_model):
    def refused() -> float:
        return REGISTRY.get_sample_value("diabetes_invalid_inputs_total", {"interface": "form"}) or 0.0

    before = refused()
    assert client.post("/predict/", {**VALID, "glucose": "-5"}).status_code == 400
    assert refused() == before + 1
    assert client.post("/predict/", VALID).status_code == 200
    assert refused() == before + 1


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
    # Threshold as a percentage, and each clinical cut-off with its source.
    assert f"{100 * served_model.threshold:.0f}%" in html
    for cutoff in CLINICAL_CUTOFFS:
        assert cutoff.code in html and cutoff.source.split(",")[0] in html


def test_model_card_shows_pooled_calibration_and_its_noise_floor(client, served_model):
    c = served_model.metadata["calibration"]
    html = client.get("/model/").content.decode()
    assert 'aria-label="calibration figures"' in html
    for text in ("ECE, pooled", "noise floor", "calibration slope", "calibration intercept", "reliability"):
        assert text in html
    assert str(c["ece"]) in html and str(c["ece_floor"]["mean"]) in html and str(c["slope"]["low"]) in html
    assert "± " + str(served_model.metadata["candidates"]["logistic_spline"]["roc_auc_std"]) in html
    assert "ece_std" not in html and "Not computed for this version" not in html


def test_model_card_of_a_version_stored_before_pooled_calibration(client, served_model):
    """Older versions lack the pooled figures (and carry per-fold ECE): the page says so, never crashes."""
    from ml_engine.models import ModelVersion
    from ml_engine.registry import active_model

    record = ModelVersion.objects.get(version=served_model.version)
    meta = {k: v for k, v in record.metadata.items() if k != "calibration"}
    meta["candidates"] = {
        name: {k: v for k, v in m.items() if not k.startswith("ece")} | {"ece": 0.0731, "ece_std": 0.0173}
        for name, m in meta["candidates"].items()
    }
    record.metadata = meta
    record.metrics = {"roc_auc": 0.849, "brier": 0.1509, "ece": 0.0731}
    record.save(update_fields=["metadata", "metrics"])
    active_model.reset()
    try:
        response = client.get("/model/")
        html = response.content.decode()
        assert response.status_code == 200
        assert "Not computed for this version" in html and "0.0731" not in html
        assert 'aria-label="calibration figures"' not in html
    finally:
        active_model.reset()


def test_examples_are_typical_people_not_rows_of_the_data(client, served_model):
    import csv
    import json

    from ml_engine.training import DATA_PATH

    html = client.get("/").content.decode()
    examples = [json.loads(raw.replace("&quot;", '"')) for raw in re.findall(r'data-example="([^"]+)"', html)]
    assert len(examples) >= 3
    columns = {f.key: f.csv_column for f in FEATURES}
    with open(DATA_PATH) as data:
        rows = [{k: float(row[c]) for k, c in columns.items()} for row in csv.DictReader(data)]
    for example in examples:
        assert clean_features(example)  # valid input
        assert not any(all(row[k] == v for k, v in example.items()) for row in rows), example


def test_kiosk_has_a_join_link_and_a_qr_code(client, served_model):
    html = client.get("/kiosk/lobby/").content.decode()
    assert 'href="http://testserver/?board=lobby"' in html
    (svg,) = re.findall(r"<svg[^>]*class=\"qr\"[^>]*>", html)
    assert 'role="img"' in svg and "QR code" in svg
    assert "<script>" not in html


def test_model_missing_gives_503_not_500(client, no_active_model):
    response = client.post("/predict/", VALID)
    assert response.status_code == 503
    assert "manage.py train" in response.content.decode()
