import numpy as np
import pytest

from ml_engine import training
from ml_engine.schema import FEATURE_KEYS


@pytest.fixture(scope="module")
def dataset():
    return training.load_dataset()


def test_dataset_matches_its_provenance(dataset):
    assert dataset.X.shape == (768, 8)
    assert int(dataset.y.sum()) == 268
    assert dataset.sha256 == "bf81d06e0c0512662862248241ab46d7c29258c6ceaad32f3cab56b52a17fdab"


def test_zeros_that_mean_missing_become_nan(dataset):
    missing = dict(zip(FEATURE_KEYS, np.isnan(dataset.X).sum(axis=0), strict=True))
    assert missing == {
        "pregnancies": 0,
        "glucose": 5,
        "blood_pressure": 35,
        "skin_thickness": 227,
        "insulin": 374,
        "bmi": 11,
        "diabetes_pedigree": 0,
        "age": 0,
    }
    # pregnancies keeps its real zeros
    assert (dataset.X[:, 0] == 0).sum() == 111


# The two additive candidates: enough to test choosing, fitting and describing in seconds. The full
# comparison (tree ensembles included) runs once, in test_commands.py.
ADDITIVE = ("logistic_spline", "logistic")


def additive_pool():
    return tuple(c for c in training.candidates() if c.name in ADDITIVE)


@pytest.fixture(scope="module")
def outcome(dataset):
    return training.train(dataset, repeats=1, pool=additive_pool())


def test_training_is_reproducible(dataset, outcome):
    again = training.train(dataset, repeats=1, pool=additive_pool())
    assert again.metadata["candidates"] == outcome.metadata["candidates"]
    assert again.metadata["threshold"] == outcome.metadata["threshold"]
    assert np.array_equal(again.pipeline.predict_proba(dataset.X), outcome.pipeline.predict_proba(dataset.X))


def test_the_candidates_are_compared_and_only_additive_ones_can_serve():
    kinds = {c.name: c.additive for c in training.candidates()}
    assert kinds == {"logistic_spline": True, "logistic": True, "random_forest": False, "gradient_boosting": False}
    assert [c.name for c in training.quick_pool()] == [training.SERVED_CANDIDATE]


def test_selection_skips_a_better_scoring_candidate_that_is_not_additive():
    def result(name, additive, auc):
        r = training.CandidateResult(training.Candidate(name, "", additive, lambda seed: None))
        r.folds.update(roc_auc=[auc], brier=[0.15])
        return r

    chosen = training.select([result("trees", False, 0.95), result("b", True, 0.84), result("a", True, 0.85)])
    assert chosen.candidate.name == "a"
    with pytest.raises(ValueError, match="additive"):
        training.select([result("trees", False, 0.95)])


def test_chosen_model_is_additive_and_clears_the_floor(outcome):
    assert outcome.chosen.candidate.additive
    metrics = outcome.metadata["metrics"]
    assert metrics["roc_auc"] >= 0.83
    assert metrics["brier"] <= 0.16
    assert 0 < outcome.metadata["threshold"] < 1
    assert outcome.metadata["curves"]["roc"][0] == [0.0, 0.0]
    assert outcome.metadata["curves"]["roc"][-1] == [1.0, 1.0]


def test_pipeline_predicts_with_missing_values(outcome):
    X = np.full((1, 8), np.nan)
    X[0, 1] = 150
    p = outcome.pipeline.predict_proba(X)[0, 1]
    assert 0 < p < 1


def test_extra_rows_change_the_data_hash(dataset):
    extra = training.with_extra_rows(dataset, dataset.X[:3], dataset.y[:3])
    assert extra.X.shape == (771, 8) and extra.extra_rows == 3
    assert extra.sha256 != dataset.sha256
