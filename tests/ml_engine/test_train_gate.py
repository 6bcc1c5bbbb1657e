"""The promotion gate (README: "Promotion gate", "Retraining from recorded outcomes"): `train`
activates a new version only when it is not worse than the active one on the same folds, so a
worse candidate (a poisoned retrain, a worse algorithm) is stored but not activated with the
reason printed, an equal one is activated, and `--force` overrides and is recorded. Only key- and
staff-recorded outcomes are used for training."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from sklearn.base import clone

from ml_engine import services
from ml_engine.models import Assessment, Interface, ModelVersion
from ml_engine.schema import FEATURES
from ml_engine.training import load_dataset
from tests.samples import PERSON

KEY = services.Recorder(source="api_key", name="key:clinic (abc)")


def poison(rows: int = 600) -> None:
    """Record, with a valid key, the CSV's own people with their outcomes flipped."""
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
    assert "stored, not active" in text and "Not activated because the promotion check refused it" in text
    assert f"models compare {served_model.version} {stored.version}" in text  # what to look at next
    assert "Promotion check: A new version is activated on its own only if" in text  # the rule, stated
    assert f"against the active version {served_model.version}, on 5 paired folds" in text
    assert "the new version's 600 database rows only ever train" in text
    assert f"refused: it is worse than the active version {served_model.version} on the same 5 held-out folds" in text
    assert "refused: it disagrees sharply with the active version" in text
    gate = stored.metadata["activation_gate"]
    assert gate["passed"] is False and gate["forced"] is False and len(gate["reasons"]) >= 2
    m = gate["measures"]
    assert m["log_loss_difference"] > 0.01 and m["log_loss_worse_folds"] == 5 and m["moved_share"] > 0.05


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
        assessment = services.assessment_create(
            prediction=services.predict(features=PERSON, interface=Interface.REST), interface=Interface.REST
        )
        services.assessment_record_outcome(public_id=assessment.public_id, outcome=outcome, recorder=recorder)
    # An outcome of unknown origin (recorded before keys existed) is left out.
    legacy = services.assessment_create(
        prediction=services.predict(features=PERSON, interface=Interface.REST), interface=Interface.REST
    )
    Assessment.objects.filter(pk=legacy.pk).update(outcome=1, outcome_source="unverified")
    out = io.StringIO()
    call_command("train", "--quick", "--from-db", stdout=out)
    text = out.getvalue()
    assert "Rows: 768 from the CSV; added from the database: 2 assessments with an outcome" in text
    assert "(1 recorded with an API key, 1 by staff); left out: 1 outcomes of unknown origin." in text
    stored = newest()
    assert stored.is_active and stored.metadata["activation_gate"]["passed"] is True
    assert stored.metadata["data"]["extra_rows"] == 2
    assert stored.metadata["data"]["sources"] == {"api_key": 1, "staff": 1, "unverified": 1}


def test_an_equal_candidate_is_activated_and_the_comparison_is_stated(served_model):
    """Retraining the same recipe on the same data: the paired folds agree exactly."""
    out = io.StringIO()
    call_command("train", "--quick", stdout=out)
    text = out.getvalue()
    stored = newest()
    assert stored.is_active and stored.version != served_model.version
    m = stored.metadata["activation_gate"]["measures"]
    assert m["active_version"] == served_model.version and m["folds"] == 5
    assert m["log_loss_difference"] == 0 and m["roc_auc_difference"] == 0 and m["moved_share"] == 0
    assert "new - active +0.0000 (worse in 0 of 5 folds)" in text
    assert "passed: not worse than the active version." in text


def test_a_worse_algorithm_is_refused_on_the_same_folds(served_model):
    """A candidate recipe that is worse by construction (an almost fully penalised logistic
    regression on unscaled values: risks near the base rate) fails the paired comparison."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    data = load_dataset()
    recipe = Pipeline([("impute", SimpleImputer()), ("classify", LogisticRegression(C=1e-6))])
    worse = clone(recipe).fit(data.X, data.y)
    empty_X, empty_y = data.X[:0], data.y[:0]
    gate = services.activation_gate(candidate=worse, recipe=recipe, base=data, extra_X=empty_X, extra_y=empty_y)
    assert not gate.passed
    assert gate.measures["log_loss_difference"] > 0.05
    assert any(r.startswith(f"it is worse than the active version {served_model.version}") for r in gate.reasons)
    # The same recipe as the active one passes with zero differences.
    same = served_model.model.pipeline
    gate = services.activation_gate(candidate=same, recipe=clone(same), base=data, extra_X=empty_X, extra_y=empty_y)
    assert gate.passed and gate.measures["log_loss_difference"] == 0 and gate.reasons == []


def test_with_no_active_version_there_is_nothing_to_compare(served_model):
    ModelVersion.objects.update(is_active=False)
    out = io.StringIO()
    call_command("train", "--quick", stdout=out)
    assert newest().is_active
    assert "no active version: nothing to compare with; activated." in out.getvalue()


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
