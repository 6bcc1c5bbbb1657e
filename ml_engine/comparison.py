"""Two model versions side by side on the same stored assessments (README: "Comparing versions").

``versions_compare`` is a read: it loads both versions the way the registry does (sha256, the
fast-path check, the recorded risks), scores the most recent assessments with each, and measures
how far they agree; on the assessments whose outcome was recorded by an API key or staff it
measures how well each predicts, with paired bootstrap intervals. ``manage.py models compare A B``
prints it; a monitoring page can show it.
"""

from __future__ import annotations

import contextlib
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import rankdata

from .evaluation import Interval, NotEstimable, logistic_recalibration
from .models import Assessment, ModelVersion
from .registry import ArtifactError, ServedModel, load_version
from .schema import FEATURES
from .selectors import TRUSTED_OUTCOME_SOURCES
from .services import band_for

COMPARE_LIMIT = 5000  # the most recent assessments scored: bounded whatever the table holds
MIN_OUTCOMES = 30  # fewer recorded outcomes than this: no AUC, Brier or calibration figures
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 0
FIGURES = ("roc_auc", "brier", "calibration_slope", "calibration_intercept")


@dataclass(frozen=True, slots=True)
class PairedFigure:
    """One figure for each version on the same outcomes, and B minus A, each with a paired
    percentile-bootstrap 95 % interval; None where it cannot be estimated."""

    name: str
    a: Interval | None
    b: Interval | None
    difference: Interval | None
    draws_used: int  # resamples in which the figure could be computed for both versions


@dataclass(frozen=True)
class Comparison:
    """What ``versions_compare`` measured (B minus A throughout)."""

    a: str
    b: str
    limit: int  # at most this many of the most recent assessments were scored
    assessments: int  # how many were
    mean_abs_difference: float | None  # mean |risk_b - risk_a|, None without assessments
    max_abs_difference: float | None
    band_flips: int  # assessments whose band differs between the two versions
    band_flip_share: float | None
    band_changes: dict[str, int]  # "low → moderate": count
    outcomes: int  # assessments among them with an outcome recorded by a key or staff
    positives: int
    min_outcomes: int
    figures: list[PairedFigure] = field(default_factory=list)
    note: str = ""  # why figures are missing, in words
    bootstrap_draws: int = BOOTSTRAP_DRAWS
    bootstrap_seed: int = BOOTSTRAP_SEED

    @property
    def enough_outcomes(self) -> bool:
        return bool(self.figures)


def _load(version: str) -> ServedModel:
    record = ModelVersion.objects.filter(version=version).first()
    if record is None:
        known = ", ".join(ModelVersion.objects.order_by("-created_at").values_list("version", flat=True)[:10])
        raise ArtifactError(f"No model version {version!r}; known versions: {known or 'none'}.")
    return load_version(record)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC by ranks (ties count one half), fast enough to bootstrap."""
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        raise NotEstimable("needs outcomes of both kinds")
    ranks = rankdata(p)
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _figures(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Every figure of FIGURES that can be computed on these rows."""
    out: dict[str, float] = {"brier": float(np.mean((p - y) ** 2))}
    with contextlib.suppress(NotEstimable):
        out["roc_auc"] = _auc(y, p)
    try:
        slope, intercept = logistic_recalibration(y, p)
        out["calibration_slope"], out["calibration_intercept"] = slope.estimate, intercept.estimate
    except NotEstimable:
        pass
    return out


def _interval(estimate: float | None, draws: list[float]) -> Interval | None:
    if estimate is None or len(draws) < 2:
        return None
    low, high = np.percentile(draws, [2.5, 97.5])
    return Interval(estimate=estimate, low=float(low), high=float(high))


def paired_bootstrap(
    y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, *, draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED
) -> list[PairedFigure]:
    """AUC, Brier, calibration slope and intercept of each set of risks on the outcomes ``y``, and
    their difference (B − A), with percentile intervals from ``draws`` paired resamples (the same
    rows for both versions in each resample, seed ``seed``)."""
    full_a, full_b = _figures(y, p_a), _figures(y, p_b)
    rng = np.random.default_rng(seed)
    samples: dict[str, tuple[list[float], list[float], list[float]]] = {name: ([], [], []) for name in FIGURES}
    for _ in range(draws):
        rows = rng.integers(0, len(y), len(y))
        fa, fb = _figures(y[rows], p_a[rows]), _figures(y[rows], p_b[rows])
        for name in FIGURES:
            if name in fa and name in fb:
                sa, sb, sd = samples[name]
                sa.append(fa[name])
                sb.append(fb[name])
                sd.append(fb[name] - fa[name])
    figures = []
    for name in FIGURES:
        sa, sb, sd = samples[name]
        a, b = full_a.get(name), full_b.get(name)
        figures.append(
            PairedFigure(
                name=name,
                a=_interval(a, sa),
                b=_interval(b, sb),
                difference=_interval(None if a is None or b is None else b - a, sd),
                draws_used=len(sd),
            )
        )
    return figures


def versions_compare(
    *,
    a: str,
    b: str,
    limit: int = COMPARE_LIMIT,
    draws: int = BOOTSTRAP_DRAWS,
    seed: int = BOOTSTRAP_SEED,
) -> Comparison:
    """Compare versions ``a`` and ``b`` on the ``limit`` most recent stored assessments.

    Both versions are loaded and verified like the registry does (raises ArtifactError, in words,
    for an unknown version or one that does not load). Agreement (mean absolute risk difference,
    band flips under each version's own bands) uses every scored assessment; AUC, Brier and
    calibration slope and intercept use those with an outcome recorded by an API key or staff
    (the outcomes `train --from-db` trusts), and only when there are at least MIN_OUTCOMES of
    them with both outcomes present. Reads only; nothing is stored."""
    if not 1 <= limit <= COMPARE_LIMIT:
        raise ValueError(f"limit must be 1 to {COMPARE_LIMIT}")
    served_a, served_b = _load(a), _load(b)
    rows = list(
        Assessment.objects.order_by("-created_at", "-pk").values_list("features", "outcome", "outcome_source")[:limit]
    )
    X = np.array(
        [[math.nan if (v := features.get(f.key)) is None else float(v) for f in FEATURES] for features, _, _ in rows],
        dtype=float,
    ).reshape(-1, len(FEATURES))
    if not len(rows):
        return Comparison(
            a=a,
            b=b,
            limit=limit,
            assessments=0,
            min_outcomes=MIN_OUTCOMES,
            bootstrap_draws=draws,
            bootstrap_seed=seed,
            mean_abs_difference=None,
            max_abs_difference=None,
            band_flips=0,
            band_flip_share=None,
            band_changes={},
            outcomes=0,
            positives=0,
            note="No stored assessments to compare on.",
        )
    p_a = served_a.model.predict_matrix(X, contributions=False)[0]
    p_b = served_b.model.predict_matrix(X, contributions=False)[0]
    gap = np.abs(p_b - p_a)
    bands_a = [band_for(r, served_a.bands) for r in p_a.tolist()]
    bands_b = [band_for(r, served_b.bands) for r in p_b.tolist()]
    changes = Counter(f"{x} → {y}" for x, y in zip(bands_a, bands_b, strict=True) if x != y)
    flips = sum(changes.values())
    trusted = np.array(
        [outcome is not None and source in TRUSTED_OUTCOME_SOURCES for _, outcome, source in rows], dtype=bool
    )
    y = np.array([outcome for _, outcome, _ in rows], dtype=object)[trusted].astype(int)
    positives = int(y.sum())
    figures: list[PairedFigure] = []
    note = ""
    if len(y) < MIN_OUTCOMES or positives == 0 or positives == len(y):
        note = (
            f"Too few recorded outcomes for AUC, Brier or calibration: {len(y)} (at least {MIN_OUTCOMES} "
            "needed, with both outcomes present)."
            if len(y) < MIN_OUTCOMES
            else f"All {len(y)} recorded outcomes are the same, so AUC and calibration cannot be measured."
        )
    else:
        figures = paired_bootstrap(y, p_a[trusted], p_b[trusted], draws=draws, seed=seed)
    return Comparison(
        a=a,
        b=b,
        limit=limit,
        assessments=len(rows),
        min_outcomes=MIN_OUTCOMES,
        bootstrap_draws=draws,
        bootstrap_seed=seed,
        mean_abs_difference=float(gap.mean()),
        max_abs_difference=float(gap.max()),
        band_flips=flips,
        band_flip_share=flips / len(rows),
        band_changes=dict(changes.most_common()),
        outcomes=len(y),
        positives=positives,
        figures=figures,
        note=note,
    )
