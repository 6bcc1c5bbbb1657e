"""Training: data loading, candidate pipelines, repeated cross-validation and the final fit.

The served model has to give calibrated probabilities and exact per-feature contributions, so only
*additive* candidates (a logistic regression over per-feature transforms) can be chosen; tree
ensembles are cross-validated beside them as a yardstick and reported in the same table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score, roc_curve
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

from .evaluation import BINS, bin_index, calibration_report, pooled_ece
from .schema import FEATURES

DATA_PATH = Path(__file__).resolve().parent / "data" / "diabetes.csv"
OUTCOME_COLUMN = "Outcome"
# Per-fold means: ECE is not among them, because ECE on a 154-row fold measures mostly the fold's
# size (README: "The model"); calibration is measured on pooled out-of-fold risks instead.
METRIC_NAMES = ("roc_auc", "brier", "accuracy")
DEFAULT_BANDS = {"low": [0.0, 0.2], "moderate": [0.2, 0.5], "high": [0.5, 1.0]}


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray  # float, NaN where a measurement is missing; columns in schema order
    y: np.ndarray  # int 0/1
    sha256: str
    source: str
    extra_rows: int = 0


def load_dataset(path: Path | None = None) -> Dataset:
    """Read the Pima CSV (``DATA_PATH`` unless told otherwise); zeros that mean 'not measured'
    become NaN. Only training reads it: serving checks a model with rows stored in its metadata."""
    path = DATA_PATH if path is None else path
    raw = path.read_bytes()
    header = raw.split(b"\n", 1)[0].decode().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    columns = {name: i for i, name in enumerate(header)}
    X = np.column_stack([table[:, columns[f.csv_column]] for f in FEATURES]).astype(float)
    for j, feature in enumerate(FEATURES):
        if feature.zero_means_missing:
            X[X[:, j] == 0, j] = np.nan
    y = table[:, columns[OUTCOME_COLUMN]].astype(int)
    return Dataset(X=X, y=y, sha256=hashlib.sha256(raw).hexdigest(), source=path.name)


def with_extra_rows(base: Dataset, X: np.ndarray, y: np.ndarray) -> Dataset:
    """The base data plus rows recorded elsewhere (assessments with an outcome)."""
    if len(y) == 0:
        return base
    digest = hashlib.sha256(base.sha256.encode())
    digest.update(np.ascontiguousarray(X, dtype=float).tobytes())
    digest.update(np.ascontiguousarray(y, dtype=np.int64).tobytes())
    return Dataset(
        X=np.vstack([base.X, X]),
        y=np.concatenate([base.y, y]),
        sha256=digest.hexdigest(),
        source=f"{base.source} + {len(y)} recorded outcomes",
        extra_rows=len(y),
    )


@dataclass(frozen=True)
class Candidate:
    name: str
    description: str
    additive: bool
    build: Callable[[int], Pipeline]


def candidates() -> tuple[Candidate, ...]:
    return (
        Candidate(
            "logistic_spline",
            "median imputation, quadratic B-splines (4 quantile knots) per feature, "
            "logistic regression (C=0.02): an additive model, exact contributions",
            True,
            lambda seed: Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("splines", SplineTransformer(n_knots=4, degree=2, knots="quantile")),
                    ("scale", StandardScaler()),
                    ("classify", LogisticRegression(C=0.02, max_iter=5000)),
                ]
            ),
        ),
        Candidate(
            "logistic",
            "median imputation, standardisation, logistic regression (C=1)",
            True,
            lambda seed: Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    ("scale", StandardScaler()),
                    ("classify", LogisticRegression(C=1.0, max_iter=5000)),
                ]
            ),
        ),
        Candidate(
            "random_forest",
            "median imputation, 150 trees, min 5 samples a leaf (not additive: reference only)",
            False,
            lambda seed: Pipeline(
                [
                    ("impute", SimpleImputer(strategy="median")),
                    (
                        "classify",
                        RandomForestClassifier(n_estimators=150, min_samples_leaf=5, random_state=seed, n_jobs=1),
                    ),
                ]
            ),
        ),
        Candidate(
            "gradient_boosting",
            "histogram gradient boosting, depth 3, native missing values (reference only)",
            False,
            lambda seed: Pipeline(
                [
                    (
                        "classify",
                        HistGradientBoostingClassifier(
                            max_depth=3, learning_rate=0.05, max_iter=150, random_state=seed
                        ),
                    )
                ]
            ),
        ),
    )


SERVED_CANDIDATE = "logistic_spline"


def quick_pool() -> tuple[Candidate, ...]:
    """The candidate a full comparison serves (it wins on this data), alone: what a first start
    (`ensure_model`, `train --quick`) cross-validates."""
    return tuple(c for c in candidates() if c.name == SERVED_CANDIDATE)


def calibration_points(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> list[dict]:
    index = bin_index(p, bins)
    points = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            points.append(
                {
                    "predicted": round(float(p[mask].mean()), 4),
                    "observed": round(float(y[mask].mean()), 4),
                    "count": int(mask.sum()),
                }
            )
    return points


def roc_points(y: np.ndarray, p: np.ndarray, limit: int = 120) -> list[list[float]]:
    fpr, tpr, _ = roc_curve(y, p)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(limit, len(fpr))).round().astype(int))
    return [[round(float(fpr[i]), 4), round(float(tpr[i]), 4)] for i in keep]


@dataclass
class CandidateResult:
    candidate: Candidate
    folds: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METRIC_NAMES})
    oof: list[np.ndarray] = field(default_factory=list)  # out-of-fold probabilities per repeat

    def mean(self, metric: str) -> float:
        return float(np.mean(self.folds[metric]))

    def std(self, metric: str) -> float:
        return float(np.std(self.folds[metric]))

    def summary(self) -> dict[str, float]:
        out = {}
        for metric in METRIC_NAMES:
            out[metric] = round(self.mean(metric), 4)
            out[f"{metric}_std"] = round(self.std(metric), 4)
        return out


ProgressFn = Callable[[str, int, int], None]


def cross_validate(
    dataset: Dataset,
    *,
    pool: tuple[Candidate, ...],
    splits: int = 5,
    repeats: int = 10,
    seed: int = 42,
    progress: ProgressFn | None = None,
) -> list[CandidateResult]:
    """Repeated stratified k-fold CV of every candidate on the same folds."""
    X, y = dataset.X, dataset.y
    folds = list(RepeatedStratifiedKFold(n_splits=splits, n_repeats=repeats, random_state=seed).split(X, y))
    results = []
    for candidate in pool:
        result = CandidateResult(candidate)
        oof = np.zeros(len(y))
        for i, (train, test) in enumerate(folds):
            model = clone(candidate.build(seed)).fit(X[train], y[train])
            p = model.predict_proba(X[test])[:, 1]
            oof[test] = p
            result.folds["roc_auc"].append(roc_auc_score(y[test], p))
            result.folds["brier"].append(brier_score_loss(y[test], p))
            result.folds["accuracy"].append(accuracy_score(y[test], p >= 0.5))
            if (i + 1) % splits == 0:
                result.oof.append(oof.copy())
            if progress:
                progress(candidate.name, i + 1, len(folds))
        results.append(result)
    return results


def select(results: list[CandidateResult]) -> CandidateResult:
    """Best additive candidate by mean ROC AUC, then by Brier score."""
    additive = [r for r in results if r.candidate.additive]
    if not additive:
        raise ValueError("No additive candidate was evaluated; one is needed to serve.")
    return max(additive, key=lambda r: (round(r.mean("roc_auc"), 4), -r.mean("brier")))


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability cut-off that maximises sensitivity + specificity on out-of-fold data."""
    fpr, tpr, thresholds = roc_curve(y, p)
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 0.0, 1.0))


@dataclass(frozen=True)
class TrainingOutcome:
    pipeline: Pipeline
    chosen: CandidateResult
    results: list[CandidateResult]
    metadata: dict


def train(
    dataset: Dataset,
    *,
    repeats: int = 10,
    splits: int = 5,
    seed: int = 42,
    pool: tuple[Candidate, ...] | None = None,
    progress: ProgressFn | None = None,
) -> TrainingOutcome:
    """Cross-validate, choose, fit the chosen pipeline on all data and describe it."""
    pool = pool or candidates()
    results = cross_validate(dataset, pool=pool, splits=splits, repeats=repeats, seed=seed, progress=progress)
    chosen = select(results)
    pipeline = chosen.candidate.build(seed).fit(dataset.X, dataset.y)
    oof_all = np.concatenate(chosen.oof)
    y_all = np.tile(dataset.y, len(chosen.oof))
    threshold = round(youden_threshold(y_all, oof_all), 4)
    pooled = {r.candidate.name: pooled_ece(dataset.y, r.oof) for r in results}
    calibration = calibration_report(dataset.y, chosen.oof)
    metadata = {
        "name": "diabetes",
        "algorithm": chosen.candidate.name,
        "description": chosen.candidate.description,
        "threshold": threshold,
        "bands": DEFAULT_BANDS,
        "metrics": {
            **chosen.summary(),
            "accuracy_at_threshold": round(float(np.mean((oof_all >= threshold) == y_all)), 4),
            "ece_pooled": calibration["ece"],
            "ece_floor": calibration["ece_floor"]["mean"],
            "calibration_slope": calibration["slope"]["estimate"],
            "calibration_intercept": calibration["intercept"]["estimate"],
        },
        "calibration": calibration,
        "cv": {"splits": splits, "repeats": repeats, "seed": seed},
        "candidates": {
            r.candidate.name: {
                "additive": r.candidate.additive,
                **r.summary(),
                "ece_pooled": pooled[r.candidate.name][0],
                "ece_floor": pooled[r.candidate.name][1],
            }
            for r in results
        },
        "data": {
            "source": dataset.source,
            "sha256": dataset.sha256,
            "rows": len(dataset.y),
            "positives": int(dataset.y.sum()),
            "extra_rows": dataset.extra_rows,
            "missing": {f.key: int(np.isnan(dataset.X[:, j]).sum()) for j, f in enumerate(FEATURES)},
        },
        "training_ranges": {
            f.key: [float(np.nanmin(dataset.X[:, j])), float(np.nanmax(dataset.X[:, j]))]
            for j, f in enumerate(FEATURES)
        },
        "curves": {
            "roc": roc_points(dataset.y, chosen.oof[0]),
            "calibration": calibration_points(y_all, oof_all),
        },
    }
    return TrainingOutcome(pipeline=pipeline, chosen=chosen, results=results, metadata=metadata)
