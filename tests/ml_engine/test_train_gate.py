"""Retraining from recorded outcomes cannot be steered by bad rows (README: "Retraining from
recorded outcomes"): only key- and staff-recorded outcomes are used, and a poisoned retrain is
stored but not activated, with the reason printed; `--force` overrides and is recorded."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ml_engine import services
from ml_engine.models import Assessment, ModelVersion
from ml_engine.schema import FEATURES
from ml_engine.training import load_dataset
from tests.samples import PERSON

KEY = services.Recorder(source="api_key", name="key:clinic (abc)")


def poison(rows: int = 600) -> None:
    """Record, with a valid key, the CSV's own people with their outcomes flipped."""
    data = load_dataset()
    Assessment.objects.bulk_create(
        Assessment(
            interface="rest",
            features={f.key: None if x != x else float(x) for f, x in zip(FEATURES, data.X[i], strict=True)},
            risk=0.5,
            band="high",
            label=1,
            model_version="v",
            outcome=int(1 - data.y[i]),
            outcome_source="api_key",
            outcome_recorded_by="key:clinic (abc)",
        )
        for i in range(rows)
    )


def newest() -> ModelVersion:
    return ModelVersion.objects.order_by("-created_at")[0]


def test_a_poisoned_retrain_is_stored_but_not_activated(served_model):
    poison()
    out = io.StringIO()
    call_command("train", "--quick", "--from-db", stdout=out)
    text = out.getvalue()
    stored = newest()
    assert stored.version != served_model.version and not stored.is_active
    assert ModelVersion.objects.get(is_active=True).version == served_model.version
    assert "stored, not active" in text and "Not activated because the activation check refused it" in text
    assert "refused: it disagrees sharply with the active model" in text
    assert "refused: it scores worse on the original data's folds" in text
    assert "Activation check: A model trained with database outcomes" in text  # the rule, stated
    gate = stored.metadata["activation_gate"]
    assert gate["passed"] is False and gate["forced"] is False and len(gate["reasons"]) == 2
    assert gate["measures"]["moved_share"] > 0.05


def test_force_activates_and_is_recorded(served_model):
    poison()
    out = io.StringIO()
    call_command("train", "--quick", "--from-db", "--force", stdout=out)
    stored = newest()
    assert stored.is_active and stored.metadata["activation_gate"]["forced"] is True
    assert "--force: activated anyway" in out.getvalue()


def test_an_honest_retrain_activates_and_reports_where_rows_came_from(served_model, django_user_model):
    staff = services.Recorder(source="staff", name="staff:nurse")
    for recorder, outcome in ((KEY, 1), (staff, 0)):
        assessment = services.assessment_create(prediction=services.predict(features=PERSON), interface="rest")
        services.assessment_record_outcome(public_id=assessment.public_id, outcome=outcome, recorder=recorder)
    # An outcome of unknown origin (recorded before keys existed) is left out.
    legacy = services.assessment_create(prediction=services.predict(features=PERSON), interface="rest")
    Assessment.objects.filter(pk=legacy.pk).update(outcome=1, outcome_source="unverified")
    out = io.StringIO()
    call_command("train", "--quick", "--from-db", stdout=out)
    text = out.getvalue()
    assert "Rows: 768 from the CSV; added from the database: 2 assessments with an outcome" in text
    assert "(1 recorded with an API key, 1 by staff); left out: 1 outcomes of unknown origin." in text
    stored = newest()
    assert stored.is_active and stored.metadata["activation_gate"]["passed"] is True
    assert stored.metadata["data"]["extra_rows"] == 2


@pytest.mark.django_db(transaction=True)
def test_train_fails_in_words_when_the_database_is_read_only(served_model, monkeypatch):
    def refuse(*args, **kwargs):
        from django.db import OperationalError

        raise OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(ModelVersion.objects, "create", refuse)
    trained = []
    monkeypatch.setattr(services, "train", lambda *a, **k: trained.append(1))
    with pytest.raises(CommandError, match="does not accept writes"):
        call_command("train", "--quick", stdout=io.StringIO())
    assert trained == []  # refused before any cross-validation
