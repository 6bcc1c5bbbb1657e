"""Model artifacts in the database and the one active model each process serves.

A version is a ``ModelVersion`` row (metadata, metrics, the artifact's sha256, whether it is
active) and a ``ModelArtifact`` row holding the joblib bytes, so any number of processes on any
number of machines need only the database (README: "Model registry"). Loading reads the bytes
once, checks their sha256 and unpickles exactly those bytes; every way that can fail becomes an
``ArtifactError``. ``MODEL_DIR`` is only where ``manage.py models export`` writes a version and
``models import`` reads one. Each process loads the active model once and keeps it; a watcher
thread notices when another process activates a different version and swaps it in. A version that
fails to load or to verify never replaces a working model. The same watcher follows the serving
plan (``ServingPlan``: a shadow that scores every prediction unseen, a canary that answers a share
of sessions and requests), loading those versions exactly as the active one; a version that fails
to load never serves, and the error stays visible in ``plan.errors``, `models` and /readyz.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import joblib
import numpy as np
import sklearn
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from sklearn.pipeline import Pipeline

from .inference import AdditiveModel, check_rows
from .metrics import set_active_version, set_serving_plan
from .models import ModelArtifact, ModelVersion, ServingPlan
from .schema import FEATURE_KEYS

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
    """The default folder of ``models export`` and ``models import``."""
    return Path(settings.MODEL_DIR)


ARTIFACT_NAME = "model.joblib"
METADATA_NAME = "metadata.json"
REGISTRY_LOCK_KEY = 0x6D6C7265  # any constant that is the same in every process: "mlre"
RETRAIN = "Run `python manage.py train` to build a model for this installation."


def serialise(pipeline: Pipeline) -> tuple[bytes, str]:
    """The joblib bytes of a fitted pipeline and their sha256."""
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    raw = buffer.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def version_name(created: datetime, digest: str) -> str:
    return f"{created:%Y%m%d-%H%M%S}-{digest[:6]}"


def store_version(*, fields: dict, content: bytes) -> ModelVersion:
    """Record a version and its artifact bytes in one transaction (not active)."""
    with transaction.atomic():
        record = ModelVersion.objects.create(**fields)
        ModelArtifact.objects.create(model_version=record, content=content, size=len(content))
    return record


def artifact_bytes(record: ModelVersion) -> bytes:
    """The stored artifact of ``record``, read from the database once."""
    content = ModelArtifact.objects.filter(model_version_id=record.pk).values_list("content", flat=True).first()
    if content is None:
        raise ArtifactError(f"Model {record.version} has no stored artifact. {RETRAIN}")
    return bytes(content)  # PostgreSQL gives a memoryview, SQLite bytes


def unpickle(raw: bytes, *, version: str) -> Pipeline:
    """Unpickle exactly ``raw`` (already hashed by the caller); anything but a fitted scikit-learn
    pipeline, and any exception on the way, is an ArtifactError."""
    try:
        pipeline = joblib.load(io.BytesIO(raw))
    except Exception as exc:  # unpickling can raise anything; none of it may reach a caller
        raise ArtifactError(f"Model {version}: the artifact does not load ({exc!r}). {RETRAIN}") from exc
    if not isinstance(pipeline, Pipeline):
        raise ArtifactError(
            f"Model {version}: the artifact holds a {type(pipeline).__name__}, not a pipeline. {RETRAIN}"
        )
    return pipeline


def fast_path_rows(metadata: dict) -> np.ndarray:
    """The rows the fast path is checked on, from the version's own metadata (never the training
    CSV): a quantile table of the training data plus the self-check rows, widened by check_rows
    with every feature missing in turn and sweeps across each hard range."""
    stored = metadata.get("fast_path_check", {}).get("rows") or metadata.get("self_check", {}).get("rows") or []
    base = np.array(stored, dtype=float).reshape(-1, len(FEATURE_KEYS))  # None in JSON -> NaN
    if not len(base):
        base = np.zeros((1, len(FEATURE_KEYS))) * np.nan
    return check_rows(base)


def load_version(record: ModelVersion) -> ServedModel:
    """Load and verify one version; raise ArtifactError saying what is wrong and what to do."""
    if record.sklearn_version != sklearn.__version__:
        raise ArtifactError(
            f"Model {record.version} was trained with scikit-learn {record.sklearn_version}, "
            f"but this process runs {sklearn.__version__}. {RETRAIN}"
        )
    raw = artifact_bytes(record)
    if hashlib.sha256(raw).hexdigest() != record.artifact_sha256:
        raise ArtifactError(
            f"Model {record.version}: the stored artifact does not match its recorded sha256. {RETRAIN}"
        )
    # README: "Model registry" -- the object comes from the bytes just hashed, never from a second read.
    pipeline = unpickle(raw, version=record.version)
    metadata = record.metadata
    try:
        model = AdditiveModel(
            pipeline, term_means=metadata["baseline"]["term_means"], check_rows=fast_path_rows(metadata)
        )
        # The risks recorded at training time must come back: this catches a pipeline that loads
        # but computes something else (a different numeric library, a tampered artifact).
        check = metadata.get("self_check", {})
        X = np.array(check.get("rows", []), dtype=float).reshape(-1, len(FEATURE_KEYS))
        reproduced = not len(X) or np.allclose(model.predict_matrix(X)[0], check["risks"], rtol=0, atol=1e-9)
    except Exception as exc:  # a pickle that is a pipeline of anything: none of it may reach a caller
        raise ArtifactError(f"Model {record.version} is not a servable additive pipeline ({exc!r}). {RETRAIN}") from exc
    if not reproduced:
        raise ArtifactError(f"Model {record.version} does not reproduce its recorded predictions. {RETRAIN}")
    return ServedModel(version=record.version, metadata=metadata, model=model)


@contextmanager
def registry_lock() -> Iterator[None]:
    """Hold the installation-wide registry lock: one process at a time trains a first model, even
    when several replicas start together (README: "Model registry"). PostgreSQL: a session
    advisory lock, so it needs no shared disk; SQLite: a file lock beside the database file (every
    process using that file is on this machine); an in-memory database has one process."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [REGISTRY_LOCK_KEY])
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [REGISTRY_LOCK_KEY])
        return
    name = str(connection.settings_dict["NAME"])
    if connection.vendor != "sqlite" or name == ":memory:" or name.startswith("file:"):
        yield
        return
    with open(f"{name}.registry-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_version(*, version: str, directory: Path | None = None) -> Path:
    """Write ``<directory>/<version>/model.joblib`` and ``metadata.json`` (checked against the
    recorded sha256 first); return the version's folder."""
    record = ModelVersion.objects.filter(version=version).first()
    if record is None:
        raise ArtifactError(f"No model version {version!r}.")
    raw = artifact_bytes(record)
    if hashlib.sha256(raw).hexdigest() != record.artifact_sha256:
        raise ArtifactError(f"Model {version}: the stored artifact does not match its recorded sha256.")
    directory = Path(directory) if directory is not None else model_dir()
    folder = directory / version
    incoming = directory / f".incoming-{version}-{os.getpid()}"
    try:
        incoming.mkdir(parents=True)
        (incoming / ARTIFACT_NAME).write_bytes(raw)
        metadata = {**record.metadata, "version": version, "artifact_sha256": record.artifact_sha256}
        (incoming / METADATA_NAME).write_text(json.dumps(metadata, indent=2, sort_keys=True))
        incoming.rename(folder)
    except OSError as exc:
        raise ArtifactError(f"Cannot export {version} to {directory}: {exc.strerror or exc}.") from exc
    return folder


def import_version(*, path: Path) -> ModelVersion:
    """Store an exported version (a folder with model.joblib and metadata.json) in the database,
    not active. Its bytes must match the sha256 in its metadata and load like any other version."""
    path = Path(path)
    try:
        raw = (path / ARTIFACT_NAME).read_bytes()
        metadata = json.loads((path / METADATA_NAME).read_text())
        version, digest = metadata["version"], metadata["artifact_sha256"]
        libraries = metadata["libraries"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} is not an exported model version ({exc!r}).") from exc
    if hashlib.sha256(raw).hexdigest() != digest:
        raise ArtifactError(f"{path / ARTIFACT_NAME} does not match the sha256 in its metadata.")
    if ModelVersion.objects.filter(version=version).exists():
        raise ArtifactError(f"Model version {version} is already stored.")
    fields = {
        "version": version,
        "created_at": datetime.fromisoformat(metadata["created"]),
        "algorithm": metadata.get("algorithm", ""),
        "artifact": f"{version}/{ARTIFACT_NAME}",
        "artifact_sha256": digest,
        "data_sha256": metadata.get("data", {}).get("sha256", ""),
        "sklearn_version": libraries.get("scikit-learn", ""),
        "numpy_version": libraries.get("numpy", ""),
        "metrics": metadata.get("metrics", {}),
        "metadata": metadata,
    }
    with transaction.atomic():
        record = store_version(fields=fields, content=raw)
        load_version(record)  # refused (and rolled back) unless it loads here
    return record


@dataclass(frozen=True)
class PlanInForce:
    """The shadow and canary a process serves beside the active version (README: "Model
    registry"). Replaced whole, never changed, so a reader needs no lock."""

    shadow: ServedModel | None = None
    canary: ServedModel | None = None
    canary_share: float = 0.0
    plan_id: int | None = None
    shadow_version: str = ""  # as asked, even when it failed to load
    canary_version: str = ""
    asked_share: float = 0.0
    errors: tuple[str, ...] = ()


NO_PLAN = PlanInForce()


class ActiveModel:
    """The process-wide holder of the served model, and of the serving plan beside it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: PlanInForce = NO_PLAN
        self._served: ServedModel | None = None
        self._error: str | None = None
        self._failed: tuple[str, str] | None = None
        self._watcher: threading.Thread | None = None

    @property
    def current(self) -> ServedModel | None:
        """The loaded model without touching the database (None before the first load)."""
        return self._served

    @property
    def plan(self) -> PlanInForce:
        """The shadow and canary in force in this process (NO_PLAN before the first load)."""
        return self._plan

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
        """Serve the version the database marks active, if it is not served yet and it loads, and
        follow the serving plan."""
        with self._lock:
            # The plan is read before the active version: `activate` changes both in one
            # transaction, and this order never pairs the new plan (canary ended) with the old
            # active version, which would send a canary's sessions back to it for a moment.
            self._follow_plan()
            return self._follow_active()

    def _follow_plan(self) -> None:
        fields = ("pk", "shadow_version", "canary_version", "canary_share")
        row = ServingPlan.objects.order_by("-pk").values_list(*fields).first()
        if row is None:
            if self._plan.plan_id is not None:
                self._set_plan(NO_PLAN)
            return
        plan_id, shadow_version, canary_version, share = row
        seen = self._plan
        if row == (seen.plan_id, seen.shadow_version, seen.canary_version, seen.asked_share):
            return  # unchanged; a version that failed stays refused until the plan changes
        errors: list[str] = []
        shadow = self._load_role("shadow", shadow_version, errors)
        canary = self._load_role("canary", canary_version, errors)
        self._set_plan(
            PlanInForce(
                shadow=shadow,
                canary=canary,
                canary_share=float(share) if canary is not None else 0.0,
                plan_id=plan_id,
                shadow_version=shadow_version,
                canary_version=canary_version,
                asked_share=share,
                errors=tuple(errors),
            )
        )

    def _load_role(self, role: str, version: str, errors: list[str]) -> ServedModel | None:
        """The loaded and verified ``version`` for ``role``, reusing one this process already holds."""
        if not version:
            return None
        for held in (self._served, self._plan.shadow, self._plan.canary):
            if held is not None and held.version == version:
                return held
        record = ModelVersion.objects.filter(version=version).first()
        try:
            if record is None:
                raise ArtifactError(f"No model version {version!r}.")
            return load_version(record)
        except ArtifactError as exc:
            message = f"The {role} version does not serve: {exc}"
            errors.append(message)
            logger.error("%s", message)
            return None

    def _set_plan(self, plan: PlanInForce) -> None:
        previous, self._plan = self._plan, plan
        shadow, canary = plan.shadow, plan.canary
        if (previous.shadow, previous.canary, previous.canary_share) != (shadow, canary, plan.canary_share):
            logger.info(
                "Serving plan: shadow %s, canary %s.",
                shadow.version if shadow else "none",
                f"{canary.version} for {plan.canary_share:.1%} of new sessions and requests" if canary else "none",
            )
        set_serving_plan(
            shadow=shadow.version if shadow else None,
            canary=canary.version if canary else None,
            share=plan.canary_share,
        )

    def _follow_active(self) -> ServedModel | None:
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
        """Forget the loaded model and plan (tests, and after the database is replaced)."""
        with self._lock:
            self._served, self._error, self._failed = None, None, None
            self._set_plan(NO_PLAN)

    def start_watcher(self, interval: float) -> None:
        """Poll the database every ``interval`` s so an `activate` anywhere reaches this process."""
        if interval <= 0 or (self._watcher and self._watcher.is_alive()):
            return

        def watch() -> None:
            failing = False  # log a failure once (with its traceback), not every interval
            while True:
                time.sleep(interval)
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


active_model = ActiveModel()
