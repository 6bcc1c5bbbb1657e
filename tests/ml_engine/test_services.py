import pytest

from ml_engine import services
from ml_engine.models import Assessment, Interface
from ml_engine.registry import active_model
from ml_engine.schema import FeatureValidationError
from tests.samples import PERSON


def test_prediction_has_every_contract_field(served_model):
    p = services.predict(features=PERSON, interface=Interface.REST).as_dict()
    assert set(p) == {"risk", "band", "label", "threshold", "contributions", "points", "imputed", "warnings", "model"}
    assert 0 <= p["risk"] <= 1
    assert p["band"] in {"low", "moderate", "high"}
    assert p["label"] == int(p["risk"] >= p["threshold"])
    assert list(p["contributions"]) == list(PERSON)
    assert list(p["points"]) == list(PERSON)
    assert p["imputed"] == [] and p["warnings"] == []
    assert p["model"] == {"name": "diabetes", "version": served_model.version}


def test_missing_features_are_imputed_and_listed(served_model):
    p = services.predict(features={"glucose": 150, "age": None}, interface=Interface.REST)
    assert p.imputed == [
        "pregnancies",
        "blood_pressure",
        "skin_thickness",
        "insulin",
        "bmi",
        "diabetes_pedigree",
        "age",
    ]


def test_values_outside_training_range_warn(served_model):
    p = services.predict(features={"glucose": 400, "age": 19}, interface=Interface.REST)
    # 400 mg/dL is also diagnostic on its own (ml_engine/schema.py: CLINICAL_CUTOFFS)
    assert p.warnings == ["extrapolated:glucose", "extrapolated:age", "clinical:glucose_diagnostic"]


def test_single_and_batch_agree_and_keep_order(served_model):
    rows = [PERSON, {"glucose": 90}, {"bmi": 45.0, "age": 60}, {"insulin": 500}]
    batch = services.predict_many(instances=rows, interface=Interface.REST)
    for row, b in zip(rows, batch, strict=True):
        one = services.predict(features=row, interface=Interface.REST)
        assert one.risk == pytest.approx(b.risk, abs=1e-12)
        assert one.contributions == pytest.approx(b.contributions, abs=1e-12)
        assert one.imputed == b.imputed


def test_batch_errors_name_the_instance(served_model):
    with pytest.raises(FeatureValidationError) as info:
        services.predict_many(instances=[PERSON, {"glucose": "high"}, {}], interface=Interface.REST)
    assert set(info.value.errors) == {"instances[1].glucose", "instances[2].non_field_errors"}


@pytest.mark.parametrize("instances", [[], "abc", {"glucose": 1}, [PERSON] * 1001])
def test_batch_size_and_shape_are_checked(served_model, instances):
    with pytest.raises(FeatureValidationError) as info:
        services.predict_many(instances=instances, interface=Interface.REST)
    assert "instances" in info.value.errors


def test_bands_follow_published_cutoffs():
    bands = {"low": [0.0, 0.2], "moderate": [0.2, 0.5], "high": [0.5, 1.0]}
    assert services.band_for(0.0, bands) == "low"
    assert services.band_for(0.2, bands) == "moderate"
    assert services.band_for(0.5, bands) == "high"
    assert services.band_for(1.0, bands) == "high"


def test_model_loads_once_per_process(served_model, monkeypatch):
    from ml_engine import registry

    calls = []
    real = registry.load_version
    monkeypatch.setattr(registry, "load_version", lambda record: calls.append(record) or real(record))
    active_model.reset()
    for _ in range(5):
        services.predict(features=PERSON, interface=Interface.REST)
    services.predict_many(instances=[PERSON] * 3, interface=Interface.REST)
    assert len(calls) == 1


def test_assessments_are_stored_and_purged(served_model):
    from datetime import timedelta

    from django.utils import timezone

    from ml_engine.models import Assessment

    p = services.predict(features=PERSON, interface=Interface.REST)
    old = services.assessment_create(prediction=p, interface=Interface.FORM)
    new = services.assessment_create(prediction=p, interface=Interface.REST)
    Assessment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    assert services.assessments_purge(older_than_days=30) == 1
    assert list(Assessment.objects.values_list("pk", flat=True)) == [new.pk]
    assert new.features == {**PERSON, "pregnancies": 2, "age": 50}


def test_batch_without_contributions_gives_the_same_risks(served_model):
    rows = [PERSON, {"glucose": 90}, {"insulin": 500}]
    full = services.predict_many(instances=rows, interface=Interface.REST)
    bare = services.predict_many(instances=rows, contributions=False, interface=Interface.REST)
    assert [p.risk for p in bare] == [p.risk for p in full]
    assert all(p.contributions == {} for p in bare)
    assert [p.imputed for p in bare] == [p.imputed for p in full]


def test_predict_risks_matches_the_batch_and_gives_labels(served_model):
    import numpy as np

    from ml_engine.schema import FEATURE_KEYS

    full_rows = [{**PERSON, "age": 30 + i} for i in range(5)]
    matrix = np.array([[row[k] for k in FEATURE_KEYS] for row in full_rows], dtype=float)
    batch = services.predict_risks(matrix=matrix, interface=Interface.V2)
    expected = services.predict_many(instances=full_rows, interface=Interface.REST)
    assert batch.risks.tolist() == pytest.approx([p.risk for p in expected], abs=1e-15)
    assert batch.labels.tolist() == [p.label for p in expected]
    assert batch.model_version == served_model.version


def test_predict_risks_names_refused_cells(served_model):
    import numpy as np

    from ml_engine.schema import FEATURE_KEYS

    matrix = np.array([[PERSON[k] for k in FEATURE_KEYS]] * 3, dtype=float)
    matrix[1, 1] = 900
    matrix[2, 7] = np.nan
    with pytest.raises(FeatureValidationError) as info:
        services.predict_risks(matrix=matrix, interface=Interface.V2)
    assert info.value.errors == {
        "instances[1].glucose": ["Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL; got 900.0."],
        "instances[2].age": ["Age is missing."],
    }
    with pytest.raises(FeatureValidationError):
        services.predict_risks(matrix=np.zeros((1001, 8)), interface=Interface.V2)


def test_every_prediction_and_storing_service_is_told_its_interface():
    """The interface is named by each caller from one enum: no default that would count a form
    or socket prediction as a REST one (README: "Operations")."""
    import inspect

    from ml_engine.models import Assessment

    for service in (
        services.predict,
        services.predict_many,
        services.predict_risks,
        services.assessment_create,
        services.assessments_create,
        services.assessments_build,
    ):
        parameter = inspect.signature(service).parameters["interface"]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY, service.__name__
        assert parameter.default is inspect.Parameter.empty, service.__name__
    assert Assessment._meta.get_field("interface").choices == Interface.choices
    assert [str(member) for member in Interface] == ["form", "rest", "v2", "ws"]


@pytest.mark.django_db
def test_one_inserted_assessment_is_stored_as_save_stores_it(served_model):
    """``assessments_insert`` writes one row with a statement compiled once; the row holds what
    ``save()`` would have stored, field by field."""
    prediction = services.predict(features={**PERSON, "insulin": None}, interface=Interface.REST)
    (inserted,) = services.assessments_build(predictions=[prediction], interface=Interface.REST)
    services.assessments_insert(assessments=[inserted])
    saved = services.assessment_create(prediction=prediction, interface=Interface.REST)
    first = Assessment.objects.get(public_id=inserted.public_id)
    second = Assessment.objects.get(pk=saved.pk)
    for field in Assessment._meta.concrete_fields:
        if field.name not in ("id", "public_id", "created_at"):
            assert getattr(first, field.attname) == getattr(second, field.attname), field.name
    assert first.features["insulin"] is None
    assert abs(first.created_at - second.created_at).total_seconds() < 60
