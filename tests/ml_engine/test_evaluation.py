"""The calibration figures (ml_engine/evaluation.py) against hand computations and known cases."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from ml_engine import evaluation

# Eight people: four given 10 % (one of them developed diabetes), four given 70 % (three did).
HAND_Y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
HAND_P = np.array([0.1, 0.1, 0.1, 0.1, 0.7, 0.7, 0.7, 0.7])


def test_expected_calibration_error_known_cases():
    y = np.array([0, 0, 1, 1])
    assert evaluation.expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == 0
    assert evaluation.expected_calibration_error(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)
    assert evaluation.expected_calibration_error(y, np.array([1.0, 1.0, 0.0, 0.0])) == pytest.approx(1.0)
    # By hand: bin 0.1 observes 1/4 (gap 0.15), bin 0.7 observes 3/4 (gap 0.05); (4*0.15 + 4*0.05) / 8.
    assert evaluation.expected_calibration_error(HAND_Y, HAND_P) == pytest.approx(0.1)


def test_brier_decomposition_by_hand_sums_to_brier():
    d = evaluation.brier_decomposition(HAND_Y, HAND_P)
    # Brier: (3*0.1^2 + 0.9^2 + 3*0.3^2 + 0.7^2) / 8 = (0.03 + 0.81 + 0.27 + 0.49) / 8 = 0.2
    assert d.brier == pytest.approx(0.2)
    # Reliability: (4*(0.1-0.25)^2 + 4*(0.7-0.75)^2) / 8 = (0.09 + 0.01) / 8
    assert d.reliability == pytest.approx(0.0125)
    # Resolution: (4*(0.25-0.5)^2 + 4*(0.75-0.5)^2) / 8
    assert d.resolution == pytest.approx(0.0625)
    # Uncertainty: base rate 0.5 -> 0.5 * 0.5
    assert d.uncertainty == pytest.approx(0.25)
    # One risk value per bin: the binning loses nothing, and the three terms give the Brier score.
    assert d.within_bin == pytest.approx(0.0, abs=1e-12)
    assert d.reliability - d.resolution + d.uncertainty == pytest.approx(d.brier)


def test_brier_decomposition_names_what_the_bins_leave_out():
    # Risks 0.12 and 0.18 share a bin; both people stayed well. Brier (0.0144 + 0.0324) / 2 = 0.0234;
    # reliability (0.15 - 0)^2 = 0.0225; resolution and uncertainty 0; within-bin: the risks'
    # variance inside the bin, 0.03^2.
    d = evaluation.brier_decomposition(np.array([0, 0]), np.array([0.12, 0.18]))
    assert (d.brier, d.reliability, d.resolution, d.uncertainty) == pytest.approx((0.0234, 0.0225, 0, 0))
    assert d.within_bin == pytest.approx(0.0009)


def test_the_noise_floor_of_known_cases():
    # One person at 50 %: whatever happens, the gap is 0.5.
    floor = evaluation.ece_noise_floor(np.array([0.5]), draws=50)
    assert (floor.mean, floor.p95) == (0.5, 0.5)
    # Two people at 50 %: gap 0.5 (both or neither, probability 1/2) or 0 -> mean 0.25.
    floor = evaluation.ece_noise_floor(np.array([0.5, 0.5]), draws=20000, seed=3)
    assert floor.mean == pytest.approx(0.25, abs=0.01) and floor.p95 == 0.5
    # Per-group: four groups of one person each, every group's gap is 0.5.
    floor = evaluation.ece_noise_floor(np.full(4, 0.5), draws=10, groups=[np.array([i]) for i in range(4)])
    assert floor.mean == 0.5


def test_the_noise_floor_is_seeded_and_shrinks_with_more_rows():
    rng = np.random.default_rng(7)
    p = rng.uniform(0.05, 0.95, 4000)
    assert evaluation.ece_noise_floor(p, seed=5) == evaluation.ece_noise_floor(p, seed=5)
    small = evaluation.ece_noise_floor(p[:150]).mean
    large = evaluation.ece_noise_floor(p).mean
    assert large < small / 3  # ~ 1/sqrt(n): 150 -> 4000 rows is about 5x smaller


def perfectly_calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = 1 / (1 + np.exp(-rng.normal(-0.6, 1.3, n)))
    return (rng.random(n) < p).astype(int), p


def test_a_perfectly_calibrated_simulation_gives_slope_one_and_intercept_zero():
    y, p = perfectly_calibrated(20000, seed=1)
    slope, intercept = evaluation.logistic_recalibration(y, p)
    assert slope.estimate == pytest.approx(1.0, abs=0.05) and slope.low < 1 < slope.high
    assert intercept.estimate == pytest.approx(0.0, abs=0.05) and intercept.low < 0 < intercept.high
    # The same figures as scikit-learn's unpenalised logistic regression.
    reference = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(evaluation.logit(p)[:, None], y)
    assert slope.estimate == pytest.approx(reference.coef_[0, 0], abs=1e-5)
    assert intercept.estimate == pytest.approx(reference.intercept_[0], abs=1e-5)


def test_overconfident_risks_give_a_slope_below_one():
    y, p = perfectly_calibrated(20000, seed=2)
    doubled = 1 / (1 + np.exp(-2 * evaluation.logit(p)))  # the same ranking, twice as extreme
    slope, _ = evaluation.logistic_recalibration(y, doubled)
    assert slope.estimate == pytest.approx(0.5, abs=0.03) and slope.high < 1


def test_figures_that_cannot_be_estimated_say_so():
    with pytest.raises(evaluation.NotEstimable):
        evaluation.logistic_recalibration(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.7]))
    with pytest.raises(evaluation.NotEstimable):  # perfect separation: the slope runs to infinity
        evaluation.logistic_recalibration(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    with pytest.raises(evaluation.NotEstimable):
        evaluation.roc_auc(np.array([0, 0]), np.array([0.1, 0.2]))


def test_log_loss_by_hand():
    # -(log 0.9 + log 0.2) / 2
    assert evaluation.log_loss(np.array([0, 1]), np.array([0.1, 0.2])) == pytest.approx(
        -(np.log(0.9) + np.log(0.2)) / 2
    )


def test_calibration_report_pools_each_repeat_and_averages():
    y, p = perfectly_calibrated(768, seed=4)
    _, q = perfectly_calibrated(768, seed=4)
    report = evaluation.calibration_report(y, [p, q], draws=200)
    assert report["rows"] == 768 and report["repeats"] == 2
    assert report["ece"] == pytest.approx(evaluation.expected_calibration_error(y, p), abs=1e-4)
    assert 0 < report["ece_floor"]["mean"] < report["ece_floor"]["p95"] < 0.1
    assert report["slope"]["low"] < report["slope"]["estimate"] < report["slope"]["high"]
    b = report["brier"]
    terms = b["reliability"] - b["resolution"] + b["uncertainty"] + b["within_bin"]
    assert terms == pytest.approx(b["brier"], abs=2e-4)
