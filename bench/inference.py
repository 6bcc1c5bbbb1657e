"""Inference per row: the served fast path vs scikit-learn's predict_proba on the same pipeline vs
the naive way (joblib.load of the artifact on every request, then predict_proba)."""

from __future__ import annotations

import time

import joblib
import numpy as np

from .stats import Summary


def run(*, artifact, served, rows: np.ndarray, repeats: int = 7) -> list[Summary]:
    pipeline = served.model.pipeline
    fast = served.model
    assert fast.fast is not None, "the served model has no fast path"
    values = [[None if np.isnan(v) else float(v) for v in row] for row in rows]
    timings: dict[str, list[float]] = {"served": [], "predict_proba": [], "naive": []}
    for _ in range(repeats):
        for row in values[:2000]:
            t = time.perf_counter_ns()
            fast.predict_one(row)
            timings["served"].append((time.perf_counter_ns() - t) / 1000)
        for row in rows[:200]:
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
        Summary.of("scikit-learn predict_proba, model in memory", timings["predict_proba"]),
        Summary.of("naive: joblib.load per request + predict_proba", timings["naive"]),
    ]
