import io

import pytest
from django.core.management import CommandError, call_command

from ml_engine import services
from ml_engine.models import Assessment, Interface, ModelArtifact, ModelVersion
from ml_engine.registry import active_model
from tests.samples import PARTIAL_PERSON


@pytest.mark.django_db
def test_train_compares_every_candidate_with_a_progress_bar(served_model):
    """The one full comparison of the suite (other tests train with --quick)."""
    out = io.StringIO()
    call_command("train", "--repeats", "1", "--no-activate", stdout=out)
    text = out.getvalue()
    assert "Cross-validating 4 candidates" in text
    assert "20/20" in text and "fit" in text  # tqdm's bar: 4 candidates x 5 folds
    for name in ("logistic_spline", "logistic", "random_forest", "gradient_boosting", "roc_auc", "brier"):
        assert name in text
    # Calibration on pooled out-of-fold risks beside its noise floor; no per-fold ECE.
    assert "ECE pooled (floor)" in text and "a perfectly calibrated model with these risks shows" in text
    assert "calibration slope" in text and "reliability" in text and "resolution" in text
    assert "stored, not active" in text
    # --no-activate left the served version alone
    assert ModelVersion.objects.get(is_active=True).version == served_model.version


def test_models_lists_pooled_ece_and_its_floor_and_a_dash_for_older_versions(served_model):
    metrics = served_model.metadata["metrics"]
    ModelVersion.objects.create(
        version="20200101-000000-old000",
        created_at=served_model.metadata["created"],
        algorithm="logistic_spline",
        artifact="-",
        artifact_sha256="-",
        data_sha256="-",
        sklearn_version="-",
        numpy_version="-",
        metrics={"roc_auc": 0.849, "brier": 0.1509, "ece": 0.0731},
    )
    out = io.StringIO()
    call_command("models", stdout=out)
    lines = out.getvalue().splitlines()
    assert "ece (floor)" in lines[0]
    (current,) = [line for line in lines if line.startswith(served_model.version)]
    assert f"{metrics['ece_pooled']:.4f} ({metrics['ece_floor']:.4f})" in current
    (old,) = [line for line in lines if line.startswith("20200101-000000-old000")]
    assert " - " in old and "0.0731" not in old


KEY = services.Recorder(source="api_key", name="key:test (abc)")


def test_train_from_db_adds_recorded_outcomes(served_model):
    for outcome in (0, 1, 1):
        prediction = services.predict(features=PARTIAL_PERSON, interface=Interface.REST)
        assessment = services.assessment_create(prediction=prediction, interface=Interface.REST)
        services.assessment_record_outcome(public_id=assessment.public_id, outcome=outcome, recorder=KEY)
    services.assessment_create(
        prediction=services.predict(features=PARTIAL_PERSON, interface=Interface.REST), interface=Interface.REST
    )  # no outcome
    out = io.StringIO()
    call_command("train", "--quick", "--from-db", "--no-activate", stdout=out)
    assert "added from the database: 3 assessments with an outcome (3 recorded with an API key" in out.getvalue()
    newest = ModelVersion.objects.order_by("-created_at").first()
    assert newest.metadata["data"]["rows"] == 768 + 3
    assert newest.metadata["data"]["extra_rows"] == 3
    assert newest.data_sha256 != served_model.metadata["data"]["sha256"]


def test_activate_rolls_back_and_forth_and_keeps_history(served_model):
    call_command("train", "--quick", stdout=io.StringIO())
    newer = ModelVersion.objects.get(is_active=True)
    assert newer.version != served_model.version
    assert active_model.current.version == newer.version
    call_command("activate", served_model.version, stdout=io.StringIO())
    assert active_model.current.version == served_model.version
    assert services.predict(features=PARTIAL_PERSON, interface=Interface.REST).model_version == served_model.version
    history = list(newer.activations.all()) + list(
        ModelVersion.objects.get(version=served_model.version).activations.all()
    )
    assert len(history) >= 2


def test_activate_unknown_version_is_an_error(served_model):
    with pytest.raises(CommandError, match="No model version 'nope'"):
        call_command("activate", "nope")


def test_activate_refuses_a_broken_artifact_and_keeps_serving(served_model):
    call_command("train", "--quick", "--no-activate", stdout=io.StringIO())
    broken = ModelVersion.objects.order_by("-created_at").first()
    ModelArtifact.objects.filter(model_version=broken).update(content=b"garbage")
    with pytest.raises(CommandError, match="sha256"):
        call_command("activate", broken.version)
    assert ModelVersion.objects.get(is_active=True).version == served_model.version
    assert services.predict(features=PARTIAL_PERSON, interface=Interface.REST).model_version == served_model.version


def test_purge_assessments_uses_the_retention_setting(served_model, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.ASSESSMENT_RETENTION_DAYS = 10
    prediction = services.predict(features=PARTIAL_PERSON, interface=Interface.REST)
    old, recent = (services.assessment_create(prediction=prediction, interface=Interface.FORM) for _ in range(2))
    Assessment.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=11))
    out = io.StringIO()
    call_command("purge_assessments", stdout=out)
    assert "Deleted 1 assessments older than 10 days." in out.getvalue()
    assert list(Assessment.objects.values_list("pk", flat=True)) == [recent.pk]


def test_purge_of_everything_needs_yes(served_model, monkeypatch):
    from django.core.management.base import CommandError

    prediction = services.predict(features=PARTIAL_PERSON, interface=Interface.REST)
    for _ in range(3):
        services.assessment_create(prediction=prediction, interface=Interface.FORM)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # no terminal: no one to ask
    with pytest.raises(CommandError, match="would delete all 3 stored assessments; nothing was deleted"):
        call_command("purge_assessments", "--days", "0", stdout=io.StringIO())
    assert Assessment.objects.count() == 3
    out = io.StringIO()
    call_command("purge_assessments", "--days", "0", "--yes", stdout=out)
    assert "Deleted 3 assessments" in out.getvalue() and Assessment.objects.count() == 0


def test_purge_asks_at_a_terminal(served_model, monkeypatch):
    from django.core.management.base import CommandError

    services.assessment_create(
        prediction=services.predict(features=PARTIAL_PERSON, interface=Interface.REST), interface=Interface.FORM
    )

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Terminal(""))
    answers = iter(["no", "yes"])
    monkeypatch.setattr("builtins.input", lambda question: next(answers))
    with pytest.raises(CommandError, match="Nothing was deleted"):
        call_command("purge_assessments", "--days", "0", stdout=io.StringIO())
    assert Assessment.objects.count() == 1
    call_command("purge_assessments", "--days", "0", stdout=io.StringIO())
    assert Assessment.objects.count() == 0


def test_ensure_model_trains_only_when_needed(served_model):
    out = io.StringIO()
    call_command("ensure_model", stdout=out)
    assert f"Model {served_model.version} is active." in out.getvalue()
    assert ModelVersion.objects.count() == 1


def test_train_quick_cross_validates_only_the_served_candidate(served_model):
    out = io.StringIO()
    call_command("train", "--quick", "--no-activate", stdout=out)
    text = out.getvalue()
    assert "Quick training: only logistic_spline" in text and "5/5" in text
    newest = ModelVersion.objects.order_by("-created_at").first()
    assert list(newest.metadata["candidates"]) == ["logistic_spline"]
    assert newest.metadata["cv"]["repeats"] == 1


def test_ensure_model_trains_quickly_when_none_is_active_and_says_so(served_model):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    out = io.StringIO()
    call_command("ensure_model", stdout=out)
    text = out.getvalue()
    assert "Training logistic_spline (the served candidate) with a quick 5-fold cross-validation" in text
    assert "Trained because no model is active" in text
    active = ModelVersion.objects.get(is_active=True)
    assert active.version != served_model.version and list(active.metadata["candidates"]) == ["logistic_spline"]


def test_ensure_model_replaces_an_active_model_that_does_not_load(served_model):
    ModelArtifact.objects.filter(model_version__version=served_model.version).update(content=b"garbage")
    active_model.reset()
    out = io.StringIO()
    call_command("ensure_model", stdout=out)
    assert "Trained because the active model does not load" in out.getvalue()
    assert ModelVersion.objects.get(is_active=True).version != served_model.version


@pytest.mark.slow
def test_replicas_starting_together_train_one_model(tmp_path):
    """Three processes run ensure_model at once on a fresh database: one trains, two wait on the
    registry lock and then find its model active."""
    import concurrent.futures

    from tests.servers import ServerEnv

    env = ServerEnv(tmp_path)
    env.extra["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    env.manage("migrate", "-v0")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda _: env.manage("ensure_model"), range(3)))
    outputs = [r.stdout for r in results]
    assert sum("Trained because no model is active" in o for o in outputs) == 1, outputs
    assert sum(" is active." in o and "Trained" not in o for o in outputs) == 2, outputs
    listing = env.manage("models").stdout
    assert len([line for line in listing.splitlines() if line[:8].isdigit()]) == 1, listing
