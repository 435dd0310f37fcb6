import numpy as np
import pytest
from segexplain.core.analytics.estimators import (
    MLPIoUEstimator,
    build_features,
    cross_validate,
    feature_names,
    mlp_forward,
    regression_scores,
)
from segexplain.core.errors import BundleError, ConfigurationError, EmptyInputError


def _problem(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)) * [1.0, 5.0, 0.1] + [0.0, 50.0, 3.0]
    y = np.clip(0.5 + 0.3 * np.tanh(x[:, 0]) + 0.02 * (x[:, 1] - 50), 0, 1)
    groups = np.repeat(np.arange(n // 20), 20)
    return x, y, groups


def test_numpy_predict_reproduces_sklearn():
    x, y, _ = _problem()
    est = MLPIoUEstimator(hidden_layer_sizes=(16, 8), max_iter=50).fit(x, y)
    sk = est._sklearn_model
    z = (x - est.scaler_mean_.astype(np.float64)) / est.scaler_scale_.astype(np.float64)
    np.testing.assert_allclose(est.predict_raw(x), sk.predict(z), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mlp_forward(z, sk.coefs_, sk.intercepts_), sk.predict(z),
                               rtol=1e-12)
    p = est.predict(x)
    assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1


def test_arrays_round_trip_without_sklearn_state():
    x, y, _ = _problem()
    est = MLPIoUEstimator(hidden_layer_sizes=(8,), max_iter=30).fit(x, y)
    arrays = est.to_arrays("full")
    assert set(arrays) == {"full_W0", "full_W1", "full_b0", "full_b1", "full_fill",
                           "full_scaler_mean", "full_scaler_scale"}
    assert all(a.dtype == np.float32 and a.dtype != object for a in arrays.values())
    again = MLPIoUEstimator.from_arrays(arrays, "full")
    np.testing.assert_array_equal(again.predict(x), est.predict(x))
    with pytest.raises(BundleError, match="no weights"):
        MLPIoUEstimator.from_arrays(arrays, "mlp2d")


def test_learns_and_nan_rows():
    x, y, groups = _problem(n=600)
    y = y.copy()
    y[:50] = np.nan  # excluded by the convention: left out of training
    cv = cross_validate({"hidden_layer_sizes": (16,), "max_iter": 200}, x, y, groups)
    assert cv.grouping == "image" and cv.folds == 5
    assert cv.scores["n"] == 550 and np.isnan(cv.oof[:50]).all()
    assert cv.scores["spearman"] > 0.8
    x2 = x.copy()
    x2[0, 1] = np.nan  # e.g. the confidence of a patch where nothing is predicted
    est = MLPIoUEstimator(max_iter=20).fit(x2, y)
    assert est.fill_[1] == pytest.approx(np.median(x2[1:, 1]), rel=1e-6)
    filled = x2.copy()
    filled[0, 1] = est.fill_[1]
    np.testing.assert_array_equal(est.predict(x2), est.predict(filled))
    assert np.isfinite(est.predict(x2)).all()


def test_grouped_folds_never_split_an_image():
    from sklearn.model_selection import GroupKFold

    x, y, groups = _problem(n=200)
    for train, test in GroupKFold(n_splits=5).split(x, groups=groups):
        assert not set(groups[train]) & set(groups[test])
    cv = cross_validate({"max_iter": 20}, x, y, np.zeros(200))  # one image: patch folds
    assert cv.grouping == "patch"
    cv3 = cross_validate({"max_iter": 20}, x, y, np.repeat([0, 1, 2], [70, 70, 60]))
    assert cv3.folds == 3 and cv3.grouping == "image"


def test_scores_and_errors():
    s = regression_scores(np.array([0.0, 0.5, 1.0, np.nan]), np.array([0.1, 0.5, 0.9, 0.2]))
    assert s["n"] == 3 and s["mae"] == pytest.approx(0.2 / 3)
    assert s["spearman"] == pytest.approx(1.0) and s["r2"] == pytest.approx(1 - 0.02 / 0.5)
    with pytest.raises(EmptyInputError):
        MLPIoUEstimator().fit(np.zeros((4, 2)), np.zeros(4))


def test_build_features():
    latent = np.arange(12, dtype=np.float32).reshape(4, 3)
    names = feature_names(2, ("entropy",))
    assert names == ["pc1", "pc2", "entropy"]
    f = build_features(latent, {"entropy": np.array([1.0, 2, 3, 4])}, names)
    np.testing.assert_array_equal(f[:, 1], latent[:, 1])
    np.testing.assert_array_equal(f[:, 2], [1, 2, 3, 4])
    with pytest.raises(ConfigurationError, match="decoder"):
        build_features(latent, {}, ["confidence"])
    with pytest.raises(ConfigurationError, match="only 3 components"):
        build_features(latent, {}, ["pc4"])
