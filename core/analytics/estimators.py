"""IoU estimators: small MLP regressors whose prediction needs numpy alone.

Three feature sets, one estimator class:

- ``mlp2d``: the source paper's estimator, an MLP on the latent-plane position
  (pc1, pc2); evaluated on a grid it draws the heatmap behind the scatter.
- ``full``: more latent components plus the engine's uncertainty features (entropy,
  confidence, uncertain_frac, pred_frac); the estimate shown per patch.
- ``latent``: the same latent components without uncertainty features, for runs that
  skip the decoder (encoder-only estimates of a new region).

Fitting uses scikit-learn's `MLPRegressor` (imported only in `fit`). The fitted state is
plain arrays (layer weights and biases, input mean and scale): `predict` is a numpy
forward pass that reproduces scikit-learn's output, so field laptops and the QGIS plugin
estimate IoU from a bundle's `.npy` files without scikit-learn.

Validation is K-fold cross-validation grouped by image (`GroupKFold`): neighbouring
patches of one image are never split between training and test, which would flatter
the scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import BundleError, ConfigurationError, EmptyInputError

#: Uncertainty features of the ``full`` estimator, in order.
UNCERTAINTY_FEATURES = ("entropy", "confidence", "uncertain_frac", "pred_frac")

#: name -> (largest number of latent components, extra per-patch columns)
ESTIMATOR_SPECS: dict[str, tuple[int, tuple[str, ...]]] = {
    "mlp2d": (2, ()),
    "full": (20, UNCERTAINTY_FEATURES),
    "latent": (20, ()),
}

#: name -> default MLP parameters
ESTIMATOR_PARAMS: dict[str, dict[str, Any]] = {
    # a smooth function of two inputs: 5,000 patches pin it down
    "mlp2d": {"hidden_layer_sizes": (32, 32), "alpha": 1e-3, "max_train_samples": 5000},
    "full": {"hidden_layer_sizes": (64, 32), "alpha": 1e-2},
    "latent": {"hidden_layer_sizes": (64, 32), "alpha": 1e-2},
}


def feature_names(n_latent: int, extra: Sequence[str] = ()) -> list[str]:
    """Names of the feature columns: pc1..pcK then the extra columns."""
    return [f"pc{i + 1}" for i in range(n_latent)] + list(extra)


def build_features(latent: np.ndarray, columns: Mapping[str, np.ndarray],
                   names: Sequence[str]) -> np.ndarray:
    """Build the (N, F) float32 features `names` (``pcK`` from `latent`, else a column)."""
    out = np.empty((latent.shape[0], len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        if name.startswith("pc") and name[2:].isdigit():
            k = int(name[2:]) - 1
            if k >= latent.shape[1]:
                raise ConfigurationError(
                    f"feature {name}: the latent space has only {latent.shape[1]} components")
            out[:, j] = latent[:, k]
        elif name in columns:
            out[:, j] = np.asarray(columns[name], dtype=np.float32)
        else:
            raise ConfigurationError(f"feature {name!r}: no such per-patch column; "
                                     "run the analysis with the decoder (not encoder-only)")
    return out


def mlp_forward(x: np.ndarray, weights: Sequence[np.ndarray],
                biases: Sequence[np.ndarray]) -> np.ndarray:
    """Forward pass of a ReLU MLP with identity output (scikit-learn's MLPRegressor), (N,)."""
    a = np.asarray(x, dtype=np.float64)
    last = len(weights) - 1
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        a = a @ np.asarray(w, np.float64) + np.asarray(b, np.float64)
        if i < last:
            np.maximum(a, 0.0, out=a)
    return a[:, 0] if a.ndim == 2 and a.shape[1] == 1 else a


#: rows per chunk of `MLPIoUEstimator.predict_raw` (the activations stay in cache)
PREDICT_CHUNK_ROWS = 32768


class MLPIoUEstimator:
    """Standardised inputs -> ReLU MLP -> IoU, clipped to [0, 1] by `predict`.

    Parameters mirror `sklearn.neural_network.MLPRegressor` (Adam); `batch_size` None
    takes about 16 mini-batches per epoch (32 to 1024 rows); `max_train_samples` caps
    the rows used for one fit (a random subsample), which bounds time and memory for
    large N: 10,000 patches pin down a regressor with a few thousand weights.

    A NaN feature (e.g. the mean confidence of a patch where nothing is predicted) is
    replaced by `fill_`, the feature's median over the training rows (over
    `max_train_samples` random rows when the fit is capped).

    Fitted attributes: `weights_`, `biases_` (lists of arrays), `fill_`, `scaler_mean_`,
    `scaler_scale_`, `n_features_in_`, `n_iter_`.
    """

    def __init__(self, hidden_layer_sizes: tuple[int, ...] = (64, 32), alpha: float = 1e-3,
                 learning_rate_init: float = 3e-3, batch_size: int | None = None,
                 max_iter: int = 60, early_stopping: bool = True,
                 max_train_samples: int | None = 10000, random_state: int = 0) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.early_stopping = early_stopping
        self.max_train_samples = max_train_samples
        self.random_state = random_state

    def fit(self, x: np.ndarray, y: np.ndarray) -> MLPIoUEstimator:
        """Fit on features `x` (N, F) and IoU `y` (N,), or targets (N, T); NaN rows left out."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        # medians of a random subsample when the fit is capped (a million-row median per
        # feature costs more than the fit)
        rng = np.random.default_rng(self.random_state)
        cap = self.max_train_samples
        med = (x[np.random.default_rng(self.random_state + 1).choice(x.shape[0], cap,
                                                                     replace=False)]
               if cap and x.shape[0] > cap else x)
        fill = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in med.T])
        usable = np.isfinite(x) | (np.isnan(x) & np.isfinite(fill))
        rows = np.flatnonzero(np.isfinite(y.reshape(len(y), -1)).all(axis=1) & usable.all(axis=1))
        if rows.size < 5:
            raise EmptyInputError(f"{rows.size} patches with a defined IoU: an estimator "
                                  "needs at least 5; analyse more labelled imagery")
        if cap and rows.size > cap:
            rows = rows[np.sort(rng.choice(rows.size, cap, replace=False))]
        x = np.where(np.isnan(x[rows]), fill, x[rows])
        y = y[rows]
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale < 1e-12] = 1.0
        early = self.early_stopping and x.shape[0] >= 200
        batch = self.batch_size or int(np.clip(x.shape[0] // 16, 32, 1024))
        mlp = MLPRegressor(hidden_layer_sizes=self.hidden_layer_sizes, activation="relu",
                           alpha=self.alpha, learning_rate_init=self.learning_rate_init,
                           batch_size=min(batch, x.shape[0]),
                           max_iter=self.max_iter, early_stopping=early,
                           validation_fraction=0.1, n_iter_no_change=6,
                           random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            mlp.fit((x - mean) / scale, y)
        self.weights_ = [w.astype(np.float32) for w in mlp.coefs_]
        self.biases_ = [b.astype(np.float32) for b in mlp.intercepts_]
        self.fill_ = fill.astype(np.float32)
        self.scaler_mean_ = mean.astype(np.float32)
        self.scaler_scale_ = scale.astype(np.float32)
        self.n_features_in_ = x.shape[1]
        self.n_iter_ = int(mlp.n_iter_)
        self._sklearn_model = mlp  # kept in memory only, for the consistency test
        return self

    def predict_raw(self, x: np.ndarray) -> np.ndarray:
        """Return the output before clipping (equals scikit-learn's `predict`)."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ConfigurationError(f"features of shape {x.shape}: expected "
                                     f"(N, {self.n_features_in_})")
        fill = self.fill_.astype(np.float64)
        mean, scale = self.scaler_mean_.astype(np.float64), self.scaler_scale_.astype(np.float64)
        parts = []
        for s in range(0, x.shape[0], PREDICT_CHUNK_ROWS):
            c = np.asarray(x[s:s + PREDICT_CHUNK_ROWS], dtype=np.float64)
            c = np.where(np.isnan(c), fill, c)
            parts.append(mlp_forward((c - mean) / scale, self.weights_, self.biases_))
        if not parts:
            return mlp_forward(np.zeros((0, x.shape[1])), self.weights_, self.biases_)
        return np.concatenate(parts)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Estimated IoU (N,) float32 in [0, 1] (NaN only where a feature had no fill)."""
        return np.clip(self.predict_raw(x), 0.0, 1.0).astype(np.float32)

    # -- plain arrays ---------------------------------------------------------
    def to_arrays(self, name: str) -> dict[str, np.ndarray]:
        """Fitted state as named arrays: NAME_W{i}, NAME_b{i}, NAME_fill, NAME_scaler_*."""
        arrays = {f"{name}_W{i}": w for i, w in enumerate(self.weights_)}
        arrays.update({f"{name}_b{i}": b for i, b in enumerate(self.biases_)})
        arrays[f"{name}_fill"] = self.fill_
        arrays[f"{name}_scaler_mean"] = self.scaler_mean_
        arrays[f"{name}_scaler_scale"] = self.scaler_scale_
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], name: str) -> MLPIoUEstimator:
        """Rebuild a fitted estimator from `to_arrays` output (numpy only)."""
        n_layers = sum(1 for k in arrays if k.startswith(f"{name}_W"))
        if n_layers == 0 or f"{name}_scaler_mean" not in arrays:
            raise BundleError(f"estimator {name!r}: no weights among the arrays; the "
                              "bundle was written without it, run the analysis again")
        est = cls()
        est.weights_ = [np.asarray(arrays[f"{name}_W{i}"], np.float32) for i in range(n_layers)]
        est.biases_ = [np.asarray(arrays[f"{name}_b{i}"], np.float32) for i in range(n_layers)]
        est.scaler_mean_ = np.asarray(arrays[f"{name}_scaler_mean"], np.float32)
        est.fill_ = np.asarray(arrays.get(f"{name}_fill", np.full_like(est.scaler_mean_, np.nan)),
                               np.float32)
        est.scaler_scale_ = np.asarray(arrays[f"{name}_scaler_scale"], np.float32)
        est.n_features_in_ = int(est.weights_[0].shape[0])
        est.n_iter_ = 0
        return est


# -- validation ---------------------------------------------------------------------


def _ranks(v: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `v`, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(v, kind="mergesort")
    sorted_v = v[order]
    starts = np.flatnonzero(np.r_[True, sorted_v[1:] != sorted_v[:-1]])
    ends = np.r_[starts[1:], v.size]
    ranks = np.empty(v.size, np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation (numpy only: `estimate` runs without scipy)."""
    ra, rb = _ranks(np.asarray(a, np.float64)), _ranks(np.asarray(b, np.float64))
    ra -= ra.mean()
    rb -= rb.mean()
    den = float(np.sqrt((ra * ra).sum() * (rb * rb).sum()))
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def regression_scores(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAE, R^2 and Spearman rank correlation over rows where both are finite."""
    y = np.asarray(y, np.float64)
    pred = np.asarray(pred, np.float64)
    ok = np.isfinite(y) & np.isfinite(pred)
    y, pred = y[ok], pred[ok]
    if y.size < 2:
        return {"mae": float("nan"), "r2": float("nan"), "spearman": float("nan"), "n": int(y.size)}
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else float("nan")
    rho = spearman(y, pred) if np.ptp(y) > 0 and np.ptp(pred) > 0 else float("nan")
    return {"mae": float(np.abs(y - pred).mean()), "r2": r2, "spearman": float(rho),
            "n": int(y.size)}


@dataclass
class CrossValidation:
    """Out-of-fold predictions and their scores."""

    oof: np.ndarray                     # (N,) float32 out-of-fold estimate, NaN where unscored
    scores: dict[str, float]            # mae, r2, spearman, n
    folds: int
    grouping: str                       # "image" (GroupKFold) or "patch" (KFold, one image)
    fold_scores: list[dict[str, float]] = field(default_factory=list)


def cross_validate(params: Mapping[str, Any], x: np.ndarray, y: np.ndarray,
                   groups: np.ndarray, n_splits: int = 5) -> CrossValidation:
    """K-fold cross-validation of `MLPIoUEstimator(**params)` grouped by `groups`.

    Folds never split a group (an image). With fewer groups than `n_splits` the number
    of folds drops to the number of groups; with a single group it falls back to plain
    K-fold over patches (recorded as grouping "patch": the scores are then optimistic).
    """
    from sklearn.model_selection import GroupKFold, KFold

    y = np.asarray(y, np.float64)
    rows = np.flatnonzero(np.isfinite(y))
    if rows.size < 10:
        raise EmptyInputError(f"{rows.size} patches with a defined IoU: cross-validation "
                              "needs at least 10; analyse more labelled imagery")
    g = np.asarray(groups)[rows]
    n_groups = len(np.unique(g))
    splits: Any
    if n_groups >= 2:
        folds = min(n_splits, n_groups)
        splits = GroupKFold(n_splits=folds).split(rows, groups=g)
        grouping = "image"
    else:
        folds = min(n_splits, 5)
        seed = int(params.get("random_state", 0))
        splits = KFold(n_splits=folds, shuffle=True, random_state=seed).split(rows)
        grouping = "patch"
    oof = np.full(x.shape[0], np.nan, dtype=np.float32)
    fold_scores = []
    for train, test in splits:
        est = MLPIoUEstimator(**params).fit(x[rows[train]], y[rows[train]])
        oof[rows[test]] = est.predict(x[rows[test]])
        fold_scores.append(regression_scores(y[rows[test]], oof[rows[test]]))
    return CrossValidation(oof=oof, scores=regression_scores(y[rows], oof[rows]),
                           folds=folds, grouping=grouping, fold_scores=fold_scores)
