"""How good a set of risks is: calibration and discrimination figures, in one place.

Training (the model card, the `train` table, ``/api/v1/model``), ``models compare`` and the
promotion gate all compute their figures here, from arrays of outcomes (0/1) and risks in [0, 1]
(README: "The model"). Nothing here touches the database or a model.

- **ECE** (expected calibration error): the gap between predicted and observed frequency in
  10 equal-width bins of risk, weighted by the rows in each bin. ECE measured on n rows is never 0
  even for a perfectly calibrated model, so it is shown beside its **noise floor**: the ECE of
  outcomes drawn from the risks themselves (y ~ Bernoulli(risk)), seeded, over many draws.
- **Calibration slope and intercept**: the logistic regression of the outcome on logit(risk),
  with Wald 95 % intervals. A calibrated model has slope 1 and intercept 0; a slope below 1 means
  risks too extreme, above 1 too timid.
- **Brier score and its Murphy decomposition** over the same bins:
  Brier = reliability − resolution + uncertainty + within-bin (the within-bin term is what the
  binning leaves out; it is 0 when every bin holds one risk value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

BINS = 10
BINNING = "10 equal-width bins of risk (0–0.1, 0.1–0.2, …, 0.9–1)"
FLOOR_DRAWS = 1000
FLOOR_SEED = 0
_EPS = 1e-6  # risks are clipped to [eps, 1 - eps] before the logit


def bin_index(p: np.ndarray, bins: int = BINS) -> np.ndarray:
    """The equal-width bin of each risk (0 .. bins-1); a risk of exactly 1 is in the top bin."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> float:
    """Mean gap between predicted and observed frequency over equal-width bins, weighted."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    gaps = np.bincount(bin_index(p, bins), weights=p - y, minlength=bins)
    return float(np.abs(gaps).sum() / len(y))


@dataclass(frozen=True, slots=True)
class NoiseFloor:
    """The ECE a perfectly calibrated model with these risks would show: mean and 95th percentile
    over ``draws`` simulated outcome sets (seed ``seed``)."""

    mean: float
    p95: float
    draws: int
    seed: int


def ece_noise_floor(
    p: np.ndarray,
    *,
    bins: int = BINS,
    draws: int = FLOOR_DRAWS,
    seed: int = FLOOR_SEED,
    groups: Sequence[np.ndarray] | None = None,
) -> NoiseFloor:
    """Simulate outcomes y ~ Bernoulli(p) ``draws`` times and measure each set's ECE against ``p``.

    With ``groups`` (index arrays, e.g. cross-validation folds) each draw's figure is the mean of
    the ECE measured within each group: the floor of a per-fold average."""
    p = np.asarray(p, dtype=float)
    rng = np.random.default_rng(seed)
    parts = [np.arange(len(p))] if groups is None else [np.asarray(g) for g in groups]
    figures = np.zeros(draws)
    for part in parts:
        q = p[part]
        onehot = np.eye(bins)[bin_index(q, bins)]  # rows x bins
        simulated = rng.random((draws, len(q))) < q  # draws x rows, True = the event happened
        gaps = (q - simulated) @ onehot  # draws x bins: sum of (risk - outcome) in each bin
        figures += np.abs(gaps).sum(axis=1) / len(q)
    figures /= len(parts)
    return NoiseFloor(mean=float(figures.mean()), p95=float(np.percentile(figures, 95)), draws=draws, seed=seed)


@dataclass(frozen=True, slots=True)
class Interval:
    """An estimate with its 95 % interval."""

    estimate: float
    low: float
    high: float

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return {k: round(v, digits) for k, v in asdict(self).items()}


class NotEstimable(ValueError):
    """The figure cannot be computed from these rows (one class only, or perfect separation)."""


def logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(q / (1 - q))


def logistic_recalibration(y: np.ndarray, p: np.ndarray) -> tuple[Interval, Interval]:
    """Calibration (slope, intercept): the unpenalised logistic regression of ``y`` on logit(p),
    fitted by Newton's method, with Wald 95 % intervals from the inverse information matrix.

    Raises NotEstimable when ``y`` has one class or the fit does not converge (separation)."""
    y = np.asarray(y, dtype=float)
    if len(y) < 3 or y.min() == y.max():
        raise NotEstimable("needs outcomes of both kinds")
    X = np.column_stack([np.ones(len(y)), logit(p)])
    beta = np.zeros(2)
    for _ in range(100):
        eta = np.clip(X @ beta, -35, 35)
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1 - mu)
        information = X.T @ (X * w[:, None])
        try:
            step = np.linalg.solve(information, X.T @ (y - mu))
        except np.linalg.LinAlgError:
            raise NotEstimable("the risks do not vary") from None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            break
    else:
        raise NotEstimable("the fit does not converge (the risks separate the outcomes)")
    eta = np.clip(X @ beta, -35, 35)
    mu = 1.0 / (1.0 + np.exp(-eta))
    cov = np.linalg.inv(X.T @ (X * (mu * (1 - mu))[:, None]))
    se = np.sqrt(np.diag(cov))
    if not np.all(np.isfinite(se)) or np.max(np.abs(beta)) > 1e3:
        raise NotEstimable("the fit does not converge (the risks separate the outcomes)")
    z = 1.959963984540054
    intercept, slope = (Interval(float(b), float(b - z * s), float(b + z * s)) for b, s in zip(beta, se, strict=True))
    return slope, intercept


@dataclass(frozen=True, slots=True)
class BrierDecomposition:
    """Brier = reliability − resolution + uncertainty + within_bin (Murphy, over ``BINNING``).

    reliability: how far each bin's mean risk is from its observed frequency (lower is better);
    resolution: how far the bins' frequencies are from the overall one (higher is better);
    uncertainty: base rate × (1 − base rate), the Brier score of always predicting the base rate;
    within_bin: the spread of risks inside each bin that binning leaves out."""

    brier: float
    reliability: float
    resolution: float
    uncertainty: float
    within_bin: float

    def as_dict(self, digits: int = 4) -> dict[str, float]:
        return {k: round(v, digits) for k, v in asdict(self).items()}


def brier_decomposition(y: np.ndarray, p: np.ndarray, bins: int = BINS) -> BrierDecomposition:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    n = len(y)
    index = bin_index(p, bins)
    counts = np.bincount(index, minlength=bins)
    filled = counts > 0
    mean_p = np.bincount(index, weights=p, minlength=bins)[filled] / counts[filled]
    mean_y = np.bincount(index, weights=y, minlength=bins)[filled] / counts[filled]
    base = y.mean()
    brier = float(np.mean((p - y) ** 2))
    reliability = float(np.sum(counts[filled] * (mean_p - mean_y) ** 2) / n)
    resolution = float(np.sum(counts[filled] * (mean_y - base) ** 2) / n)
    uncertainty = float(base * (1 - base))
    return BrierDecomposition(
        brier=brier,
        reliability=reliability,
        resolution=resolution,
        uncertainty=uncertainty,
        within_bin=brier - (reliability - resolution + uncertainty),
    )


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC; raises NotEstimable when ``y`` has one class."""
    y = np.asarray(y)
    if len(y) == 0 or y.min() == y.max():
        raise NotEstimable("needs outcomes of both kinds")
    return float(roc_auc_score(y, p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean negative log-likelihood (natural log) of the outcomes under the risks."""
    y = np.asarray(y, dtype=float)
    q = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))


def _mean_interval(intervals: Sequence[Interval]) -> Interval:
    return Interval(
        estimate=float(np.mean([i.estimate for i in intervals])),
        low=float(np.mean([i.low for i in intervals])),
        high=float(np.mean([i.high for i in intervals])),
    )


CALIBRATION_METHOD = (
    "Out-of-fold risks pooled within each cross-validation repeat (every person once, scored by a "
    "model that did not see her), figures averaged over the repeats. ECE and the Brier "
    "decomposition use " + BINNING + ". Noise floor: outcomes drawn from the same risks "
    f"(y ~ Bernoulli(risk), {FLOOR_DRAWS} draws per repeat, seed {FLOOR_SEED} plus the repeat's number), "
    "the ECE of each draw; "
    "mean and 95th percentile. Slope and intercept: logistic regression of the outcome on "
    "logit(risk), Wald 95 % intervals (averaged over the repeats)."
)


def calibration_report(y: np.ndarray, repeats: Sequence[np.ndarray], *, draws: int = FLOOR_DRAWS) -> dict:
    """The calibration figures of out-of-fold risks, as stored in a version's metadata under
    ``calibration`` (README: "The model").

    ``repeats`` holds one array of out-of-fold risks per cross-validation repeat, each covering
    every row of ``y`` once; each figure is computed on one repeat's pooled risks (``len(y)`` rows)
    and averaged over the repeats, so the row count behind each figure is the data's, not the
    repeats' total."""
    y = np.asarray(y)
    eces = [expected_calibration_error(y, p) for p in repeats]
    floors = [ece_noise_floor(p, draws=draws, seed=FLOOR_SEED + i) for i, p in enumerate(repeats)]
    fits = [logistic_recalibration(y, p) for p in repeats]
    parts = [brier_decomposition(y, p) for p in repeats]
    brier = BrierDecomposition(
        **{field: float(np.mean([getattr(d, field) for d in parts])) for field in BrierDecomposition.__slots__}
    )
    return {
        "rows": len(y),
        "repeats": len(repeats),
        "binning": BINNING,
        "method": CALIBRATION_METHOD,
        "ece": round(float(np.mean(eces)), 4),
        "ece_range": [round(min(eces), 4), round(max(eces), 4)],
        "ece_floor": {
            "mean": round(float(np.mean([f.mean for f in floors])), 4),
            "p95": round(float(np.mean([f.p95 for f in floors])), 4),
            "draws": draws,
            "seed": FLOOR_SEED,
        },
        "slope": _mean_interval([slope for slope, _ in fits]).as_dict(),
        "intercept": _mean_interval([intercept for _, intercept in fits]).as_dict(),
        "brier": brier.as_dict(),
    }


def pooled_ece(y: np.ndarray, repeats: Sequence[np.ndarray], *, draws: int = FLOOR_DRAWS) -> tuple[float, float]:
    """(pooled ECE, its noise-floor mean) averaged over the repeats: the `train` table's column."""
    eces = [expected_calibration_error(y, p) for p in repeats]
    floors = [ece_noise_floor(p, draws=draws, seed=FLOOR_SEED + i).mean for i, p in enumerate(repeats)]
    return round(float(np.mean(eces)), 4), round(float(np.mean(floors)), 4)
