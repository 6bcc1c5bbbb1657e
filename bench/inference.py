"""Inference per row: the served fast path vs scikit-learn's predict_proba on the same pipeline vs
the naive way (joblib.load of the artifact on every request, then predict_proba)."""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
import numpy as np

from .stats import Summary

if TYPE_CHECKING:
    from ml_engine.registry import ServedModel

PROBA_ROWS = 200  # the rows every predict_proba timing uses (also in MLServer's venv: bench.mlserver)


def pandas_note() -> str:
    """scikit-learn looks for pandas on every predict_proba; whether it finds it changes the time."""
    spec = importlib.util.find_spec("pandas")
    return "this venv, pandas installed" if spec else "this venv, no pandas"


def run(*, served: ServedModel, rows: np.ndarray, repeats: int = 7) -> list[Summary]:
    pipeline = served.model.pipeline
    # The naive row loads a joblib file per request: the served pipeline, dumped once here.
    artifact = Path(tempfile.mkdtemp(prefix="bench-naive-")) / "model.joblib"
    joblib.dump(pipeline, artifact)
    fast = served.model
    assert fast.fast is not None, "the served model has no fast path"
    values = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    timings: dict[str, list[float]] = {"served": [], "predict_proba": [], "naive": []}
    for _ in range(repeats):
        for row in values[:2000]:
            t = time.perf_counter_ns()
            fast.predict_one(row)
            timings["served"].append((time.perf_counter_ns() - t) / 1000)
        for row in rows[:PROBA_ROWS]:
            x = row.reshape(1, -1)
            t = time.perf_counter_ns()
            pipeline.predict_proba(x)
            timings["predict_proba"].append((time.perf_counter_ns() - t) / 1000)
        for row in rows[:15]:
            x = row.reshape(1, -1)
            t = time.perf_counter_ns()
            joblib.load(artifact).predict_proba(x)
            timings["naive"].append((time.perf_counter_ns() - t) / 1000)
    return [
        Summary.of("served fast path (folded pipeline)", timings["served"]),
        Summary.of(f"scikit-learn predict_proba, model in memory ({pandas_note()})", timings["predict_proba"]),
        Summary.of("naive: joblib.load per request + predict_proba", timings["naive"]),
    ]
