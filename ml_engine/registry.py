"""Model artifacts on disk and the one active model each process serves.

An artifact is ``MODEL_DIR/<version>/model.joblib`` plus ``metadata.json``; the database row
(``ModelVersion``) records it and which version is active. Each process loads the active model
once and keeps it; a watcher thread notices when another process activates a different version
and swaps it in. A version that fails to load or to verify never replaces a working model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import joblib
import numpy as np
import sklearn
from django.conf import settings
from django.db import close_old_connections

from .inference import AdditiveModel, NotAdditive, check_rows
from .metrics import set_active_version
from .models import ModelVersion
from .schema import FEATURE_KEYS
from .training import load_dataset

logger = logging.getLogger(__name__)


class ModelUnavailable(RuntimeError):
    """No model can serve: none trained yet, or the active one failed to load."""


class ArtifactError(RuntimeError):
    """An artifact is missing, corrupt, from another library version, or gives wrong answers."""


@dataclass(frozen=True)
class ServedModel:
    version: str
    metadata: dict
    model: AdditiveModel

    @property
    def name(self) -> str:
        return self.metadata.get("name", "diabetes")

    @property
    def threshold(self) -> float:
        return float(self.metadata["threshold"])

    @property
    def bands(self) -> dict[str, list[float]]:
        return self.metadata["bands"]

    @property
    def training_ranges(self) -> dict[str, list[float]]:
        return self.metadata["training_ranges"]


def model_dir() -> Path:
    return Path(settings.MODEL_DIR)


def write_artifact(*, pipeline, metadata: dict, created: datetime) -> tuple[str, Path, str]:
    """Store a fitted pipeline and its metadata; return (version, artifact path, sha256)."""
    folder_tmp = model_dir() / f".incoming-{created:%Y%m%d%H%M%S%f}"
    folder_tmp.mkdir(parents=True, exist_ok=False)
    artifact = folder_tmp / "model.joblib"
    joblib.dump(pipeline, artifact)
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    version = f"{created:%Y%m%d-%H%M%S}-{digest[:6]}"
    metadata = {**metadata, "version": version, "artifact_sha256": digest}
    (folder_tmp / "metadata.json").write_text(json.dumps(metadata, indent=2, sort_keys=True))
    folder = model_dir() / version
    folder_tmp.rename(folder)
    return version, folder / "model.joblib", digest


def load_version(record: ModelVersion) -> ServedModel:
    """Load and verify one version; raise ArtifactError saying what is wrong and what to do."""
    path = model_dir() / record.artifact
    retrain = "Run `python manage.py train` to build a model for this installation."
    if record.sklearn_version != sklearn.__version__:
        raise ArtifactError(
            f"Model {record.version} was trained with scikit-learn {record.sklearn_version}, "
            f"but this process runs {sklearn.__version__}. {retrain}"
        )
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(
            f"Model {record.version}: cannot read {record.artifact} ({exc.strerror}). {retrain}"
        ) from exc
    if hashlib.sha256(raw).hexdigest() != record.artifact_sha256:
        raise ArtifactError(f"Model {record.version}: {record.artifact} does not match its recorded sha256. {retrain}")
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # unpickling can raise anything; none of it may reach a caller
        raise ArtifactError(f"Model {record.version}: {record.artifact} does not load ({exc!r}). {retrain}") from exc
    metadata = record.metadata
    try:
        model = AdditiveModel(
            pipeline,
            term_means=metadata["baseline"]["term_means"],
            check_rows=check_rows(load_dataset().X),
        )
    except (NotAdditive, KeyError, AttributeError, ValueError) as exc:
        raise ArtifactError(f"Model {record.version} is not a servable additive pipeline ({exc}). {retrain}") from exc
    # The risks recorded at training time must come back: this catches a pipeline that loads but
    # computes something else (a different numeric library, a tampered file with a matching row).
    check = metadata.get("self_check", {})
    X = np.array(check.get("rows", []), dtype=float).reshape(-1, len(FEATURE_KEYS))
    if len(X):
        risks, _ = model.predict_matrix(X)
        if not np.allclose(risks, check["risks"], rtol=0, atol=1e-9):
            raise ArtifactError(f"Model {record.version} does not reproduce its recorded predictions. {retrain}")
    return ServedModel(version=record.version, metadata=metadata, model=model)


class ActiveModel:
    """The process-wide holder of the served model."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: ServedModel | None = None
        self._error: str | None = None
        self._failed: tuple[str, str] | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def current(self) -> ServedModel | None:
        """The loaded model without touching the database (None before the first load)."""
        return self._served

    @property
    def error(self) -> str | None:
        """Why the active version is not the one being served, if it is not."""
        return self._error

    def get(self) -> ServedModel:
        served = self._served
        if served is None:
            self.refresh()
            served = self._served
            if served is None:
                raise ModelUnavailable(self._error or "No model is active. Run `python manage.py train`.")
        return served

    def refresh(self) -> ServedModel | None:
        """Serve the version the database marks active, if it is not served yet and it loads."""
        with self._lock:
            record = ModelVersion.objects.filter(is_active=True).first()
            if record is None:
                if self._served is None:
                    self._error = "No model is active. Run `python manage.py train`."
                return self._served
            if self._served is not None and self._served.version == record.version:
                self._error = None
                return self._served
            if self._failed == (record.version, record.artifact_sha256):
                return self._served  # already refused; the error stands until something changes
            try:
                served = load_version(record)
            except ArtifactError as exc:
                self._failed = (record.version, record.artifact_sha256)
                self._error = str(exc)
                if self._served is not None:
                    logger.error("%s Still serving %s.", exc, self._served.version)
                else:
                    logger.error("%s", exc)
                return self._served
            self._install(served)
            return served

    def install(self, served: ServedModel) -> None:
        """Serve an already loaded and verified model (the process that activated it)."""
        with self._lock:
            self._install(served)

    def _install(self, served: ServedModel) -> None:
        previous = self._served
        self._served, self._error, self._failed = served, None, None
        if previous is None:
            logger.info("Serving model %s.", served.version)
        elif previous.version != served.version:
            logger.info("Now serving model %s (was %s).", served.version, previous.version)
        set_active_version(served.version)

    def reset(self) -> None:
        """Forget the loaded model (tests, and after the database is replaced)."""
        with self._lock:
            self._served, self._error, self._failed = None, None, None

    def start_watcher(self, interval: float) -> None:
        """Poll the database every ``interval`` s so an `activate` anywhere reaches this process."""
        if interval <= 0 or (self._watcher and self._watcher.is_alive()):
            return
        self._stop.clear()

        def watch() -> None:
            failing = False  # log a failure once (with its traceback), not every interval
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception as exc:  # a database hiccup must not kill the watcher
                    if not failing:
                        logger.exception("Checking the active model version failed; retrying quietly.")
                    else:
                        logger.debug("Checking the active model version still fails: %s", exc)
                    failing = True
                else:
                    if failing:
                        logger.info("Checking the active model version works again.")
                    failing = False
                finally:
                    close_old_connections()

        self._watcher = threading.Thread(target=watch, name="model-watcher", daemon=True)
        self._watcher.start()

    def stop_watcher(self) -> None:
        self._stop.set()


active_model = ActiveModel()
