import math

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline

from ml_engine import inference, training


@pytest.fixture(scope="module")
def dataset():
    return training.load_dataset()


@pytest.fixture(scope="module", params=["logistic_spline", "logistic"])
def model(request, dataset):
    candidate = next(c for c in training.candidates() if c.name == request.param)
    pipeline = candidate.build(0).fit(dataset.X, dataset.y)
    terms = inference.additive_terms(pipeline, inference.feature_groups(pipeline), dataset.X)
    return inference.AdditiveModel(pipeline, term_means=terms.mean(axis=0), check_rows=inference.check_rows(dataset.X))


def test_matrix_path_equals_scikit_learn(model, dataset):
    risks, _ = model.predict_matrix(dataset.X)
    assert np.abs(risks - model.pipeline.predict_proba(dataset.X)[:, 1]).max() < 1e-12


def test_contributions_add_up_to_the_log_odds(model, dataset):
    risks, contributions = model.predict_matrix(dataset.X)
    logits = np.log(risks / (1 - risks))
    assert np.abs(model.baseline_logit + contributions.sum(axis=1) - logits).max() < 1e-9


def test_fast_path_is_used_and_agrees_everywhere(model, dataset):
    assert model.fast is not None and model.fast_error <= inference.FAST_PATH_TOLERANCE
    rows = inference.check_rows(dataset.X)
    rng = np.random.default_rng(7)
    random_rows = rows[rng.integers(0, len(rows), 300)]
    random_rows[rng.random(random_rows.shape) < 0.3] = np.nan
    risks, contributions = model.predict_matrix(random_rows)
    for row, risk, contrib in zip(random_rows, risks, contributions, strict=True):
        fast_risk, fast_contrib = model.fast.predict_one([None if math.isnan(v) else v for v in row])
        assert fast_risk == pytest.approx(risk, abs=1e-12)
        assert fast_contrib == pytest.approx(list(contrib), abs=1e-12)


def test_fast_path_extreme_values_do_not_overflow(model):
    risk, _ = model.predict_one([30, 600, 200, 120, 1500, 90, 5, 120])
    assert 0 <= risk <= 1


def test_non_additive_pipelines_are_refused(dataset):
    forest = Pipeline([("impute", SimpleImputer()), ("classify", RandomForestClassifier(n_estimators=5))])
    forest.fit(dataset.X, dataset.y)
    with pytest.raises(inference.NotAdditive):
        inference.feature_groups(forest)


def test_disagreeing_fold_falls_back_to_scikit_learn(dataset, monkeypatch, caplog):
    candidate = training.candidates()[0]
    pipeline = candidate.build(0).fit(dataset.X, dataset.y)
    terms = inference.additive_terms(pipeline, inference.feature_groups(pipeline), dataset.X)
    real_fold = inference.fold

    def skewed_fold(p, means):
        folded = real_fold(p, means)
        folded.intercept += 1e-6
        return folded

    monkeypatch.setattr(inference, "fold", skewed_fold)
    model = inference.AdditiveModel(pipeline, term_means=terms.mean(axis=0), check_rows=dataset.X)
    assert model.fast is None and model.fast_error > 1e-12
    assert "using scikit-learn" in caplog.text
    risk, _ = model.predict_one([1, 120, 70, None, None, 30, 0.4, 40])
    X = np.array([[1, 120, 70, np.nan, np.nan, 30, 0.4, 40]])
    assert risk == pytest.approx(pipeline.predict_proba(X)[0, 1], abs=1e-15)


def test_vectorised_fold_equals_scikit_learn_over_the_data_and_the_range_sweeps(model, dataset):
    rows = inference.check_rows(dataset.X)  # the training data, each feature missing, hard-range sweeps
    risks, contributions = model.fast.predict_matrix(rows)
    reference = model.pipeline.predict_proba(rows)[:, 1]
    _, reference_contributions = model.sklearn_matrix(rows)
    assert np.abs(risks - reference).max() < 1e-12
    assert np.abs(contributions - reference_contributions).max() < 1e-12


def test_vectorised_and_row_by_row_folds_agree(model, dataset):
    rng = np.random.default_rng(11)
    rows = inference.check_rows(dataset.X)[rng.integers(0, 1000, 200)]
    rows[rng.random(rows.shape) < 0.3] = np.nan
    risks, contributions = model.fast.predict_matrix(rows)
    for row, risk, contrib in zip(rows, risks, contributions, strict=True):
        one_risk, one_contrib = model.fast.predict_one([None if math.isnan(v) else v for v in row])
        assert risk == pytest.approx(one_risk, abs=1e-15)
        assert list(contrib) == pytest.approx(one_contrib, abs=1e-15)


def test_the_served_matrix_path_is_the_fold_and_skips_contributions_when_asked(model, dataset, monkeypatch):
    monkeypatch.setattr(model.pipeline, "predict_proba", None)  # scikit-learn must not be called
    monkeypatch.setattr(inference, "additive_terms", None)
    risks, contributions = model.predict_matrix(dataset.X, contributions=False)
    assert contributions is None and risks.shape == (len(dataset.X),)


def test_the_matrix_path_falls_back_to_scikit_learn_without_a_fold(model, dataset, monkeypatch):
    monkeypatch.setattr(model, "fast", None)
    risks, contributions = model.predict_matrix(dataset.X[:50])
    assert np.abs(risks - model.pipeline.predict_proba(dataset.X[:50])[:, 1]).max() < 1e-15
    assert contributions.shape == (50, 8)


@pytest.mark.parametrize("n", [1, 3, inference.FoldedModel.SCALAR_ROWS])
def test_a_few_rows_go_row_by_row_and_equal_scikit_learn(model, dataset, n):
    rows = inference.check_rows(dataset.X)[-n * 7 :: 7]  # sweeps and missing values among them
    risks, contributions = model.fast.predict_matrix(rows)
    vectorised_risks, vectorised_contributions = model.fast.risks(model.fast.terms(rows)), None
    assert risks.shape == (n,) and contributions.shape == (n, 8)
    assert np.abs(risks - model.pipeline.predict_proba(rows)[:, 1]).max() < 1e-12
    assert np.abs(risks - vectorised_risks).max() < 1e-15
    assert model.fast.predict_matrix(rows, contributions=False)[1] is vectorised_contributions
