import json

import pytest
from django.core.management import call_command

from ml_engine import services
from ml_engine.models import ModelActivation, ModelVersion
from ml_engine.registry import ArtifactError, ModelUnavailable, active_model, load_version, model_dir


def test_no_active_model_says_what_to_do(db):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    with pytest.raises(ModelUnavailable, match=r"manage\.py train"):
        services.predict(features={"glucose": 100})


def test_artifact_from_another_sklearn_version_is_refused(served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    record.sklearn_version = "0.0.1"
    with pytest.raises(ArtifactError, match=r"scikit-learn 0\.0\.1.*manage\.py train"):
        load_version(record)


def test_corrupt_artifact_is_refused(served_model, tmp_path, settings):
    record = ModelVersion.objects.get(version=served_model.version)
    settings.MODEL_DIR = tmp_path
    (tmp_path / record.version).mkdir()
    (tmp_path / record.artifact).write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(record)


def test_metadata_json_is_written_next_to_the_artifact(served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    meta = json.loads((model_dir() / record.version / "metadata.json").read_text())
    for key in (
        "version",
        "created",
        "threshold",
        "bands",
        "metrics",
        "training_ranges",
        "curves",
        "libraries",
        "data",
        "artifact_sha256",
    ):
        assert key in meta
    assert meta["data"]["sha256"] == record.data_sha256


def test_activation_is_recorded(served_model):
    services.model_activate(version=served_model.version)
    assert ModelActivation.objects.filter(model_version__version=served_model.version).exists()


def test_models_command_lists_versions(served_model, capsys):
    call_command("models")
    out = capsys.readouterr().out
    assert served_model.version in out and "roc_auc" in out
