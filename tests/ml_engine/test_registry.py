import hashlib
import io
import json
import pickle

import pytest
from django.core.management import CommandError, call_command

from ml_engine import registry, services
from ml_engine.models import Interface, ModelActivation, ModelArtifact, ModelVersion
from ml_engine.registry import (
    ArtifactError,
    ModelUnavailable,
    active_model,
    export_version,
    load_version,
    serialise,
)


def test_no_active_model_says_what_to_do(db):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    with pytest.raises(ModelUnavailable, match=r"manage\.py train"):
        services.predict(features={"glucose": 100}, interface=Interface.REST)


def test_artifact_from_another_sklearn_version_is_refused(served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    record.sklearn_version = "0.0.1"
    with pytest.raises(ArtifactError, match=r"scikit-learn 0\.0\.1.*manage\.py train"):
        load_version(record)


def test_corrupt_artifact_is_refused(served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    ModelArtifact.objects.filter(model_version=record).update(content=b"not a model")
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(record)


def test_a_version_without_stored_bytes_is_refused(served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    ModelArtifact.objects.filter(model_version=record).delete()
    with pytest.raises(ArtifactError, match="no stored artifact"):
        load_version(record)


def store_pickle(record, obj) -> None:
    """Replace a version's stored bytes with ``obj`` pickled, and record their sha256, as a
    database writer who can also fix up the hash could."""
    raw, digest = serialise(obj)
    ModelArtifact.objects.filter(model_version=record).update(content=raw, size=len(raw))
    ModelVersion.objects.filter(pk=record.pk).update(artifact_sha256=digest)
    record.refresh_from_db()


class Explodes:
    def __reduce__(self):
        return (int, ("not a number",))  # unpickling raises ValueError


@pytest.mark.parametrize("obj", [{"a": 1}, [1, 2], Explodes(), "text"])
def test_anything_but_a_servable_pipeline_is_an_artifact_error(served_model, obj):
    record = ModelVersion.objects.get(version=served_model.version)
    store_pickle(record, obj)
    with pytest.raises(ArtifactError):
        load_version(record)


def test_a_pipeline_that_is_not_additive_is_an_artifact_error(served_model):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    record = ModelVersion.objects.get(version=served_model.version)
    store_pickle(record, Pipeline([("scale", StandardScaler())]))  # unfitted, no classifier
    with pytest.raises(ArtifactError, match="not a servable additive pipeline"):
        load_version(record)


def test_the_loaded_object_comes_from_the_hashed_bytes(served_model, monkeypatch, tmp_path):
    """The swap race: whatever happens to the stored row after it was read and hashed, the pipeline
    is unpickled from those same bytes, and a planted pickle never runs."""
    record = ModelVersion.objects.get(version=served_model.version)
    marker = tmp_path / "planted-code-ran"
    planted = pickle.dumps(_Planted(str(marker)))
    read = registry.artifact_bytes

    def read_then_swap(rec):
        raw = read(rec)
        ModelArtifact.objects.filter(model_version=rec).update(content=planted)  # swapped after the read
        return raw

    loaded = []
    real_load = registry.joblib.load

    def spy_load(source, *args, **kwargs):
        assert isinstance(source, io.BytesIO), "the artifact must be unpickled from memory, not a path"
        loaded.append(source.getvalue())
        return real_load(source, *args, **kwargs)

    monkeypatch.setattr(registry, "artifact_bytes", read_then_swap)
    monkeypatch.setattr(registry.joblib, "load", spy_load)
    served = load_version(record)
    assert served.version == record.version
    assert [hashlib.sha256(raw).hexdigest() for raw in loaded] == [record.artifact_sha256]
    assert not marker.exists()
    # The next load reads the swapped row: its bytes do not match the recorded hash, and are refused
    # before they are unpickled.
    monkeypatch.setattr(registry, "artifact_bytes", read)
    with pytest.raises(ArtifactError, match="sha256"):
        load_version(record)
    assert not marker.exists() and len(loaded) == 1


class _Planted:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # would create the marker file if ever unpickled


def test_serving_never_reads_the_training_csv(served_model, monkeypatch, tmp_path):
    from ml_engine import training

    monkeypatch.setattr(training, "DATA_PATH", tmp_path / "missing.csv")
    with pytest.raises(OSError):
        training.load_dataset()  # the patch is in force
    active_model.reset()
    served = active_model.get()
    assert served.version == served_model.version and served.model.fast is not None
    assert (
        services.predict_many(instances=[{"glucose": 120}], interface=Interface.REST)[0].model_version
        == served_model.version
    )


def test_export_writes_the_artifact_and_its_metadata(served_model, tmp_path):
    record = ModelVersion.objects.get(version=served_model.version)
    folder = export_version(version=record.version, directory=tmp_path)
    assert folder == tmp_path / record.version
    assert hashlib.sha256((folder / "model.joblib").read_bytes()).hexdigest() == record.artifact_sha256
    meta = json.loads((folder / "metadata.json").read_text())
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
        "fast_path_check",
    ):
        assert key in meta
    assert meta["data"]["sha256"] == record.data_sha256


def test_models_export_and_import_round_trip(served_model, tmp_path):
    call_command("models", "export", served_model.version, "--dir", str(tmp_path), stdout=io.StringIO())
    ModelVersion.objects.filter(version=served_model.version).delete()
    out = io.StringIO()
    call_command("models", "import", str(tmp_path / served_model.version), stdout=out)
    assert f"Imported {served_model.version}" in out.getvalue()
    record = ModelVersion.objects.get(version=served_model.version)
    assert not record.is_active
    assert load_version(record).model.fast is not None
    with pytest.raises(CommandError, match="already stored"):
        call_command("models", "import", str(tmp_path / served_model.version))


def test_models_import_refuses_a_tampered_file(served_model, tmp_path):
    folder = export_version(version=served_model.version, directory=tmp_path)
    (folder / "model.joblib").write_bytes(b"tampered")
    with pytest.raises(CommandError, match="sha256"):
        call_command("models", "import", str(folder))


def test_models_export_of_an_unknown_version_is_an_error(served_model, tmp_path):
    with pytest.raises(CommandError, match="No model version"):
        call_command("models", "export", "nope", "--dir", str(tmp_path))


def test_activation_is_recorded(served_model):
    services.model_activate(version=served_model.version)
    assert ModelActivation.objects.filter(model_version__version=served_model.version).exists()


def test_models_command_lists_versions(served_model, capsys):
    call_command("models")
    out = capsys.readouterr().out
    assert served_model.version in out and "roc_auc" in out
