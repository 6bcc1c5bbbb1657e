"""Inference on a fitted additive pipeline: the scikit-learn path and the folded fast path.

A served pipeline is ``impute -> per-feature transform -> scale -> logistic regression``. Its
log-odds are ``intercept + sum_j g_j(x_j)``, so each feature's contribution is exact. For one row,
calling ``predict_proba`` costs hundreds of microseconds of scikit-learn overhead; folding every
step into one piecewise polynomial per feature gives the same numbers in a few microseconds. The
fold is checked against scikit-learn when a model loads and is only used when it agrees to 1e-12,
evaluated row by row (``predict_one``: the form, the live socket) and over a whole matrix at once
(``predict_matrix``: REST batches and V2, with NumPy's ``searchsorted`` and Horner's rule).
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
from scipy.interpolate import BSpline, PPoly
from scipy.special import expit
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import SplineTransformer, StandardScaler

from .schema import FEATURE_KEYS, FEATURES

logger = logging.getLogger(__name__)

FAST_PATH_TOLERANCE = 1e-12


class NotAdditive(ValueError):
    """The pipeline's log-odds cannot be split exactly into one term per input feature."""


def feature_groups(pipeline: Pipeline) -> list[np.ndarray]:
    """For each input feature, the columns of the classifier's input that derive from it."""
    classifier = pipeline[-1]
    if not isinstance(classifier, LogisticRegression) or classifier.coef_.shape[0] != 1:
        raise NotAdditive("the last step is not a binary logistic regression")
    for step in pipeline[:-1]:
        if getattr(step, "add_indicator", False):
            raise NotAdditive("missing-value indicators are not supported")
    names = list(pipeline[:-1].get_feature_names_out(list(FEATURE_KEYS)))
    groups: list[list[int]] = [[] for _ in FEATURE_KEYS]
    for column, name in enumerate(names):
        owners = [j for j, key in enumerate(FEATURE_KEYS) if name == key or name.startswith(key + "_sp_")]
        if len(owners) != 1:
            raise NotAdditive(f"transformed column {name!r} does not belong to one feature")
        groups[owners[0]].append(column)
    return [np.array(g, dtype=int) for g in groups]


def additive_terms(pipeline: Pipeline, groups: list[np.ndarray], X: np.ndarray) -> np.ndarray:
    """Per-feature log-odds terms, shape (n, 8), with scikit-learn doing every transform."""
    transformed = pipeline[:-1].transform(X)
    weighted = transformed * pipeline[-1].coef_[0]
    return np.column_stack([weighted[:, g].sum(axis=1) for g in groups])


class _Term(Protocol):
    """One feature's folded log-odds term, for a value and for a column of values."""

    @property
    def fill_term(self) -> float: ...

    def term(self, x: float) -> float: ...

    def terms(self, x: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class _FoldedFeature:
    fill: float  # imputed value for a missing measurement
    fill_term: float
    lo: float  # outside [lo, hi] the term is constant (spline) ...
    hi: float
    lo_term: float
    hi_term: float
    breaks: tuple[float, ...]  # ... and inside it a polynomial per interval, highest power first
    polys: tuple[tuple[float, ...], ...]

    def term(self, x: float) -> float:
        if x <= self.lo:
            return self.lo_term
        if x >= self.hi:
            return self.hi_term
        i = bisect.bisect_right(self.breaks, x) - 1
        dx = x - self.breaks[i]
        acc = 0.0
        for c in self.polys[i]:
            acc = acc * dx + c
        return acc

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.breaks), np.array(self.polys).T.copy()  # coefficients: (power, interval)

    def terms(self, x: np.ndarray) -> np.ndarray:
        """``term`` over a column (NaN = missing): searchsorted picks the interval, Horner's rule
        evaluates its polynomial with the same operations as the scalar path."""
        breaks, coefs = self._arrays
        i = np.clip(np.searchsorted(breaks, x, side="right") - 1, 0, len(breaks) - 1)
        dx = x - breaks[i]
        acc = np.zeros_like(x)
        for row in coefs:
            acc = acc * dx + row[i]
        acc = np.where(x <= self.lo, self.lo_term, acc)
        acc = np.where(x >= self.hi, self.hi_term, acc)
        return np.where(np.isnan(x), self.fill_term, acc)


class FoldedModel:
    """The whole pipeline as a few floats per feature: ``predict_one`` costs microseconds and
    ``predict_matrix`` evaluates the same polynomials over a whole matrix in NumPy."""

    def __init__(self, intercept: float, features: list[_Term], term_means: Iterable[float]) -> None:
        self.intercept = intercept
        self.features = features
        self.term_means = tuple(float(m) for m in term_means)
        self._means = np.array(self.term_means)

    def predict_one(self, values: Sequence[float | None]) -> tuple[float, list[float]]:
        logit = self.intercept
        contributions = []
        for folded, mean, x in zip(self.features, self.term_means, values, strict=True):
            term = folded.fill_term if x is None else folded.term(x)
            logit += term
            contributions.append(term - mean)
        # Same formula as scipy's expit, written so it cannot overflow for large |logit|.
        if logit >= 0:
            risk = 1.0 / (1.0 + math.exp(-logit))
        else:
            e = math.exp(logit)
            risk = e / (1.0 + e)
        return risk, contributions

    def terms(self, X: np.ndarray) -> np.ndarray:
        """Per-feature log-odds terms, shape (n, 8), for rows with NaN where a value is missing."""
        return np.column_stack([folded.terms(X[:, j]) for j, folded in enumerate(self.features)])

    def risks(self, terms: np.ndarray) -> np.ndarray:
        # Summed feature by feature, in the order predict_one adds them, so one row gives the same
        # log-odds either way; then the overflow-free logistic function of predict_one.
        logit = np.full(len(terms), self.intercept)
        for j in range(terms.shape[1]):
            logit += terms[:, j]
        e = np.exp(-np.abs(logit))
        return np.where(logit >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

    # Up to this many rows, ``predict_one`` row by row is quicker than NumPy's cost per call
    # (a few µs a row against ~100 µs for any matrix), and gives the same numbers.
    SCALAR_ROWS = 16

    def predict_matrix(self, X: np.ndarray, *, contributions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Risks (and contributions, when asked for) for every row of ``X`` (NaN = missing)."""
        if 0 < len(X) <= self.SCALAR_ROWS:
            answers = [self.predict_one([None if v != v else v for v in row]) for row in X.tolist()]
            risks = np.array([risk for risk, _ in answers])
            return risks, (np.array([terms for _, terms in answers]) if contributions else None)
        terms = self.terms(X)
        return self.risks(terms), (terms - self._means if contributions else None)


def fold(pipeline: Pipeline, term_means: Iterable[float]) -> FoldedModel:
    """Fold ``impute -> [splines] -> scale -> logistic regression`` into per-feature polynomials."""
    steps = [step for _, step in pipeline.steps]
    kinds = [type(s) for s in steps]
    if kinds not in (
        [SimpleImputer, StandardScaler, LogisticRegression],
        [SimpleImputer, SplineTransformer, StandardScaler, LogisticRegression],
    ):
        raise NotAdditive(f"no fold for steps {[k.__name__ for k in kinds]}")
    imputer, *middle, scaler, classifier = steps
    if imputer.strategy not in ("median", "mean", "constant", "most_frequent") or imputer.add_indicator:
        raise NotAdditive("imputer must fill values without indicators")
    weights = classifier.coef_[0] / scaler.scale_
    offsets = -weights * scaler.mean_
    groups = feature_groups(pipeline)
    folded: list[_Term] = []
    for j, group in enumerate(groups):
        fill = float(imputer.statistics_[j])
        if not middle:
            (c,) = group
            folded.append(_LinearFeature(fill, float(offsets[c]), float(weights[c])))
            continue
        splines: SplineTransformer = middle[0]
        if splines.extrapolation != "constant":
            raise NotAdditive("only constant spline extrapolation folds")
        basis = splines.bsplines_[j]
        spline = BSpline(basis.t, weights[group], basis.k, extrapolate=False)
        pp = PPoly.from_spline(spline)
        lo, hi = float(basis.t[basis.k]), float(basis.t[-basis.k - 1])
        const = float(offsets[group].sum())
        breaks: list[float] = []
        polys: list[tuple[float, ...]] = []
        for i in range(len(pp.x) - 1):
            if pp.x[i] < lo or pp.x[i + 1] > hi or pp.x[i + 1] <= pp.x[i]:
                continue  # padding knots outside the base interval
            coefs = [float(c) for c in pp.c[:, i]]
            coefs[-1] += const
            breaks.append(float(pp.x[i]))
            polys.append(tuple(coefs))
        feature = _FoldedFeature(
            fill=fill,
            fill_term=0.0,
            lo=lo,
            hi=hi,
            lo_term=float(spline(lo)) + const,
            hi_term=float(spline(hi)) + const,
            breaks=tuple(breaks),
            polys=tuple(polys),
        )
        folded.append(dataclasses.replace(feature, fill_term=feature.term(fill)))
    return FoldedModel(float(classifier.intercept_[0]), folded, term_means)


@dataclass(frozen=True, slots=True)
class _LinearFeature:
    fill: float
    a: float
    b: float

    @property
    def fill_term(self) -> float:
        return self.a + self.b * self.fill

    def term(self, x: float) -> float:
        return self.a + self.b * x

    def terms(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(x), self.fill_term, self.a + self.b * x)


class AdditiveModel:
    """A fitted additive pipeline with exact contributions, on the fast path where it is safe."""

    def __init__(self, pipeline: Pipeline, *, term_means: Sequence[float], check_rows: np.ndarray):
        self.pipeline = pipeline
        self.groups = feature_groups(pipeline)
        self.term_means = np.asarray(term_means, dtype=float)
        self.intercept = float(pipeline[-1].intercept_[0])
        self.fast: FoldedModel | None = None
        self.fast_error: float | None = None
        try:
            candidate = fold(pipeline, self.term_means)
        except NotAdditive as exc:
            logger.warning("Fast inference path unavailable (%s); using scikit-learn.", exc)
            return
        self.fast_error = self._disagreement(candidate, check_rows)
        if self.fast_error <= FAST_PATH_TOLERANCE:
            self.fast = candidate
        else:
            logger.warning(
                "Fast inference path differs from scikit-learn by %.3g (> %.0e); using scikit-learn.",
                self.fast_error,
                FAST_PATH_TOLERANCE,
            )

    def _disagreement(self, folded: FoldedModel, X: np.ndarray) -> float:
        """Largest difference from scikit-learn, in risk or contribution, of the row-by-row and of
        the whole-matrix evaluation of the fold."""
        risks, contributions = self.sklearn_matrix(X)
        fast_risks, fast_contributions = folded.predict_matrix(X)
        worst = max(
            float(np.max(np.abs(fast_risks - risks))), float(np.max(np.abs(fast_contributions - contributions)))
        )
        for row, risk, contrib in zip(X, risks, contributions, strict=True):
            values = [None if math.isnan(v) else float(v) for v in row]
            fast_risk, fast_contrib = folded.predict_one(values)
            worst = max(worst, abs(fast_risk - risk), float(np.max(np.abs(np.array(fast_contrib) - contrib))))
        return worst

    @property
    def baseline_logit(self) -> float:
        return self.intercept + float(self.term_means.sum())

    def sklearn_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Risks and contributions with scikit-learn doing every transform: the reference."""
        terms = additive_terms(self.pipeline, self.groups, X)
        risks = expit(self.intercept + terms.sum(axis=1))
        return risks, terms - self.term_means

    def predict_matrix(self, X: np.ndarray, *, contributions: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """Risks for many rows (NaN = missing), and their contributions unless told not to: the
        vectorised fold when it was verified, scikit-learn otherwise."""
        if self.fast is not None:
            return self.fast.predict_matrix(X, contributions=contributions)
        risks, terms = self.sklearn_matrix(X)
        return risks, (terms if contributions else None)

    def predict_one(self, values: Sequence[float | None]) -> tuple[float, list[float]]:
        if self.fast is not None:
            return self.fast.predict_one(values)
        X = np.array([[np.nan if v is None else v for v in values]], dtype=float)
        risks, contributions = self.sklearn_matrix(X)
        return float(risks[0]), [float(c) for c in contributions[0]]


def check_rows(X: np.ndarray) -> np.ndarray:
    """Rows the fast path is verified on: the training data, plus every feature missing in turn
    and a sweep across each hard range (to cover the constant extrapolation regions)."""
    rows = [X]
    medians = np.nanmedian(X, axis=0)
    for j, feature in enumerate(FEATURES):
        sweep = np.tile(medians, (41, 1))
        sweep[:, j] = np.linspace(feature.min, feature.max, 41)
        rows.append(sweep)
        gap = medians.copy()
        gap[j] = np.nan
        rows.append(gap[None, :])
    rows.append(np.full((1, len(FEATURES)), np.nan))
    return np.vstack(rows)
