"""Reads of the registry and of the stored assessments (ml_engine/selectors.py)."""

import math
import uuid

import pytest

from ml_engine import selectors, services
from ml_engine.models import Assessment, Interface
from ml_engine.registry import ModelUnavailable
from ml_engine.schema import FEATURE_KEYS, FEATURES
from tests.samples import PERSON


def stored(features=PERSON, **fields) -> Assessment:
    prediction = services.predict(features=features, interface=Interface.REST)
    assessment = services.assessment_create(prediction=prediction, interface=Interface.REST)
    if fields:
        Assessment.objects.filter(pk=assessment.pk).update(**fields)
        assessment.refresh_from_db()
    return assessment


def test_an_assessment_is_found_by_its_public_id_only(served_model):
    assessment = stored()
    assert selectors.assessment_get(public_id=assessment.public_id) == assessment
    assert selectors.assessment_get(public_id=str(assessment.public_id)) == assessment
    for other in (assessment.pk, str(assessment.pk), "not-a-uuid", None, uuid.uuid4()):
        with pytest.raises(Assessment.DoesNotExist):
            selectors.assessment_get(public_id=other)


def test_outcome_counts_and_dataset_keep_only_trusted_sources(served_model):
    stored()  # no outcome: neither counted nor used
    stored({"glucose": 148, "age": 50}, outcome=1, outcome_source="api_key")
    stored(outcome=0, outcome_source="staff")
    stored(outcome=1, outcome_source="unverified")
    stored(outcome=0, outcome_source="")  # an outcome written around the service counts as unverified
    assert selectors.outcome_counts() == {"api_key": 1, "staff": 1, "unverified": 2}
    X, y = selectors.outcome_dataset()
    assert X.shape == (2, len(FEATURES)) and y.tolist() == [1, 0]
    # Imputed values are NaN (training imputes them again), given ones are the values.
    assert [key for key, x in zip(FEATURE_KEYS, X[0], strict=True) if not math.isnan(x)] == ["glucose", "age"]
    assert X[0, FEATURE_KEYS.index("glucose")] == 148 and X[1].tolist() == [float(PERSON[k]) for k in FEATURE_KEYS]


def test_assessment_count_counts_what_a_purge_would_delete(served_model):
    from datetime import timedelta

    from django.utils import timezone

    stored()
    stored(created_at=timezone.now() - timedelta(days=40))
    assert selectors.assessment_count() == 2
    assert selectors.assessment_count(older_than_days=30) == 1
    assert services.assessments_purge(older_than_days=30) == 1
    assert selectors.assessment_count() == 1


def test_model_overview_is_the_served_model_and_a_bounded_history(served_model):
    overview = selectors.model_overview(history=1)
    assert overview.served.version == served_model.version
    assert [row.feature.key for row in overview.features] == list(FEATURE_KEYS)
    ranges = served_model.training_ranges
    assert all([row.train_min, row.train_max] == list(ranges[row.feature.key]) for row in overview.features)
    assert len(overview.versions) == 1
    body = overview.as_dict()
    assert body["version"] == served_model.version and len(body["versions"]) == 1
    assert body["features"][0] == {
        **FEATURES[0].as_dict(),
        "train_min": ranges[FEATURES[0].key][0],
        "train_max": ranges[FEATURES[0].key][1],
    }


def test_model_version_list_is_every_version_oldest_first(served_model):
    from datetime import timedelta

    from ml_engine.models import ModelVersion
    from ml_engine.registry import store_version

    record = ModelVersion.objects.get(version=served_model.version)
    older = {f.name: getattr(record, f.name) for f in ModelVersion._meta.fields if f.name not in ("id", "is_active")}
    older.update(version="older", created_at=record.created_at - timedelta(days=1))
    store_version(fields=older, content=b"-")
    records = selectors.model_version_list()
    versions = [r.version for r in records]
    assert versions.index("older") < versions.index(served_model.version)
    assert [r.created_at for r in records] == sorted(r.created_at for r in records)
    assert len(selectors.model_overview(history=1).versions) == 1
    newest_first = [v["version"] for v in selectors.model_overview(history=len(records)).versions]
    assert newest_first == versions[::-1]


def test_model_overview_without_a_model_says_so(db):
    from ml_engine.models import ModelVersion
    from ml_engine.registry import active_model

    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    with pytest.raises(ModelUnavailable):
        selectors.model_overview()
