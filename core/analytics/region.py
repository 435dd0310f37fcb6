"""Region-level IoU: one overall figure for many patches, estimated from their confusion.

A region's overall IoU is total intersection over total union, sum(tp) / sum(tp + fp +
fn). The pixels a model predicts as building, P = tp + fp, are known without labels, so

    overall IoU = (sum(P) - sum(fp)) / (sum(P) + sum(fn)):

estimating a region's IoU is estimating how many of its predicted pixels are false
positives and how many building pixels the model missed. Every method below does that
per patch and sums, so all of them estimate the same figure:

- ``mean_confidence``: the model's own probabilities read as calibrated (a predicted
  pixel is wrong with probability 1 - p, a background pixel with probability p);
- ``atc``: Average Thresholded Confidence (Garg et al., ICLR 2022) adapted to IoU: a
  pixel whose confidence |logit| is at or below a threshold counts as an error (a false
  positive where building is predicted, a false negative elsewhere); the threshold is
  the one that gives the reference its real overall IoU;
- ``mlp2d``: two MLPs of the latent-plane position (pc1, pc2), the source paper's
  estimator inputs, learn each patch's false-positive and false-negative share;
- ``full``: the same on the stronger estimator's features (more latent components,
  uncertainty features and the expected errors of the probabilities);
- ``gated``: ``full`` on the patches inside the reference's coverage only (novelty at or
  below COVERAGE_PERCENTILE); the others are out of coverage and get no number.

The gated figure is the one `estimate` and `info` report, with a 90 % interval whose
width comes from the method's leave-one-region-out errors on the reference (see
`baselines`) and the patch-level noise of the sums.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.metrics import HIST_BINS, HIST_LIMIT, HIST_WIDTH
from .estimators import UNCERTAINTY_FEATURES, MLPIoUEstimator, build_features, feature_names

#: novelty percentile above which a patch is out of the reference's coverage
COVERAGE_PERCENTILE = 95.0
#: the region methods, weakest assumptions last
METHODS = ("mean_confidence", "atc", "mlp2d", "full", "gated")
#: two-sided 90 % normal quantile
Z90 = 1.6448536269514722
#: expected-error columns the ``full`` confusion estimator adds to its features
SOFT_FEATURES = ("soft_fp_frac", "soft_fn_frac")
#: MLP parameters of the confusion estimators (targets: shares of a patch's pixels)
CONFUSION_PARAMS: dict[str, dict[str, Any]] = {
    "mlp2d": {"hidden_layer_sizes": (32, 32), "alpha": 1e-3},
    "full": {"hidden_layer_sizes": (64, 32), "alpha": 1e-2},
}


def valid_pixels(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Valid pixels per patch (N,) float64: the logit histogram's total, else the counts."""
    if "logit_hist" in columns and np.asarray(columns["logit_hist"]).ndim == 2:
        v = np.asarray(columns["logit_hist"], np.float64).sum(axis=1)
        if v.any():
            return v
    return np.nansum([np.asarray(columns[k], np.float64) for k in ("tp", "fp", "fn", "tn")],
                     axis=0)


def has_confusion_inputs(columns: Mapping[str, np.ndarray]) -> bool:
    """Whether the table has what the region estimates need (a decoder ran)."""
    return all(k in columns for k in ("pred_frac", *SOFT_FEATURES, "logit_hist")) and bool(
        np.isfinite(np.asarray(columns["pred_frac"], np.float64)).any())


def overall_iou_from_errors(pred_px: np.ndarray, fp_px: np.ndarray,
                            fn_px: np.ndarray) -> float | None:
    """(sum P - sum fp) / (sum P + sum fn) over finite rows; None without a union."""
    p, fp, fn = (np.asarray(a, np.float64) for a in (pred_px, fp_px, fn_px))
    ok = np.isfinite(p) & np.isfinite(fp) & np.isfinite(fn)
    fp = np.minimum(fp[ok], p[ok])                       # never more errors than predictions
    union = p[ok].sum() + fn[ok].sum()
    return float((p[ok].sum() - fp.sum()) / union) if union > 0 else None


def real_overall_iou(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> float | None:
    """sum(tp) / sum(tp + fp + fn) of the labelled patches at `rows`; None without any."""
    if "tp" not in columns:
        return None
    tp, fp, fn = (np.asarray(columns[k], np.float64)[rows] for k in ("tp", "fp", "fn"))
    ok = np.isfinite(tp) & np.isfinite(fp) & np.isfinite(fn)
    union = (tp[ok] + fp[ok] + fn[ok]).sum()
    return float(tp[ok].sum() / union) if ok.any() and union > 0 else None


# -- model-free methods ----------------------------------------------------------------

def mean_confidence_iou(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> float | None:
    """Overall IoU if the model's probabilities were calibrated (expected confusion)."""
    v = valid_pixels(columns)[rows]
    pred = np.asarray(columns["pred_frac"], np.float64)[rows] * v
    fp = np.asarray(columns["soft_fp_frac"], np.float64)[rows] * v
    fn = np.asarray(columns["soft_fn_frac"], np.float64)[rows] * v
    return overall_iou_from_errors(pred, fp, fn)


def _tail_counts(hist: np.ndarray, t: float) -> tuple[float, float, float]:
    """Pixels with logit > t, in [0, t] and in [-t, 0) (linear within a bin)."""
    edges = -HIST_LIMIT + HIST_WIDTH * np.arange(HIST_BINS + 1)
    h = np.asarray(hist, np.float64)

    def above(x: float) -> float:   # pixels with logit > x (end bins are open)
        if x <= edges[0]:
            return float(h.sum())
        if x >= edges[-1]:
            return 0.0
        j = int(np.clip((x - edges[0]) // HIST_WIDTH, 0, HIST_BINS - 1))
        frac = (edges[j + 1] - x) / HIST_WIDTH
        return float(h[j + 1:].sum() + frac * h[j])

    total_pos = above(0.0)
    sure_pos = above(t)
    unsure_neg = above(-t) - total_pos
    return sure_pos, total_pos - sure_pos, unsure_neg


def atc_iou(hist_total: np.ndarray, threshold: float) -> float | None:
    """Overall IoU that ATC reads off summed logit histograms at `threshold` (|logit|).

    Predicted pixels above the threshold count as true positives, those at or below it as
    false positives; background pixels at or below it count as false negatives.
    """
    tp, fp, fn = _tail_counts(hist_total, float(threshold))
    union = tp + fp + fn
    return tp / union if union > 0 else None


def fit_atc_threshold(hist_total: np.ndarray, real_iou: float) -> float:
    """The |logit| threshold at which `atc_iou` of the reference equals its real IoU.

    ATC's IoU falls as the threshold rises; bisection over [0, HIST_LIMIT], clipped to the
    ends when the real IoU lies outside the reachable range.
    """
    lo, hi = 0.0, HIST_LIMIT
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        v = atc_iou(hist_total, mid)
        if v is None:
            return mid
        lo, hi = (mid, hi) if v > real_iou else (lo, mid)
    return 0.5 * (lo + hi)


# -- learned confusion ------------------------------------------------------------------

def confusion_feature_names(kind: str, n_latent: int) -> list[str]:
    """Features of the ``mlp2d`` (pc1, pc2) or ``full`` confusion estimator."""
    if kind == "mlp2d":
        return feature_names(2)
    return feature_names(n_latent, (*UNCERTAINTY_FEATURES, *SOFT_FEATURES))


def take(columns: Mapping[str, np.ndarray], rows: np.ndarray,
         names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The columns (all, or `names` where present) at `rows`."""
    keys = columns if names is None else [k for k in names if k in columns]
    return {k: np.asarray(columns[k])[rows] for k in keys}


#: columns the region methods read
REGION_COLUMNS = ("pred_frac", *UNCERTAINTY_FEATURES, *SOFT_FEATURES, "logit_hist",
                  "tp", "fp", "fn", "tn", "split", "image", "region")


@dataclass
class ConfusionEstimator:
    """An MLP with two outputs: a patch's false-positive and false-negative shares.

    Shares of the patch's valid pixels, each clipped to [0, 1]. `latent` and `columns`
    passed to the methods are aligned row by row.
    """

    features: list[str]
    net: MLPIoUEstimator

    @classmethod
    def fit(cls, latent: np.ndarray, columns: Mapping[str, np.ndarray],
            features: Sequence[str], params: Mapping[str, Any]) -> ConfusionEstimator:
        """Fit on the labelled patches (rows without counts are left out)."""
        v = valid_pixels(columns)
        x = build_features(latent, columns, features)
        with np.errstate(invalid="ignore", divide="ignore"):
            y = np.column_stack([np.asarray(columns["fp"], np.float64) / v,
                                 np.asarray(columns["fn"], np.float64) / v])
        return cls(list(features), MLPIoUEstimator(**params).fit(x, y))

    def predict(self, latent: np.ndarray,
                columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Estimated false-positive and false-negative shares (N,) of every patch."""
        out = self.net.predict(build_features(latent, columns, self.features))
        out = out.reshape(latent.shape[0], 2).astype(np.float64)
        return out[:, 0], out[:, 1]

    def region_iou(self, latent: np.ndarray,
                   columns: Mapping[str, np.ndarray]) -> float | None:
        """Estimated overall IoU of all the given patches."""
        if latent.shape[0] == 0:
            return None
        fp, fn = self.predict(latent, columns)
        v = valid_pixels(columns)
        pred = np.asarray(columns["pred_frac"], np.float64) * v
        return overall_iou_from_errors(pred, fp * v, fn * v)

    def to_arrays(self, name: str) -> dict[str, np.ndarray]:
        """Plain arrays NAME_W{i}, NAME_b{i}, ... (see `MLPIoUEstimator.to_arrays`)."""
        return self.net.to_arrays(name)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], name: str,
                    features: Sequence[str]) -> ConfusionEstimator:
        """Rebuild from `to_arrays` output (numpy only)."""
        return cls(list(features), MLPIoUEstimator.from_arrays(arrays, name))


@dataclass
class RegionModel:
    """The fitted region methods of one reference (see the module doc)."""

    atc_threshold: float | None
    estimators: dict[str, ConfusionEstimator]

    @classmethod
    def fit(cls, latent: np.ndarray, columns: Mapping[str, np.ndarray], *, n_latent: int,
            seed: int = 0, max_fit: int | None = 5000) -> RegionModel:
        """Fit ATC's threshold and both confusion estimators on labelled patches."""
        real = real_overall_iou(columns, np.arange(latent.shape[0]))
        hist = np.asarray(columns["logit_hist"], np.float64).sum(axis=0)
        t = fit_atc_threshold(hist, real) if real is not None else None
        ests = {}
        for kind in ("mlp2d", "full"):
            params = {**CONFUSION_PARAMS[kind], "random_state": seed,
                      "max_train_samples": max_fit}
            names = confusion_feature_names(kind, min(n_latent, latent.shape[1]))
            ests[kind] = ConfusionEstimator.fit(latent, columns, names, params)
        return cls(t, ests)

    def estimate(self, latent: np.ndarray, columns: Mapping[str, np.ndarray],
                 in_coverage: np.ndarray | None = None) -> dict[str, float | None]:
        """Every method's overall IoU estimate for the given patches (aligned rows)."""
        hist = np.asarray(columns["logit_hist"], np.float64).sum(axis=0)
        out: dict[str, float | None] = {
            "mean_confidence": mean_confidence_iou(columns, np.arange(latent.shape[0])),
            "atc": (atc_iou(hist, self.atc_threshold)
                    if self.atc_threshold is not None else None)}
        for kind, est in self.estimators.items():
            out[kind] = est.region_iou(latent, columns)
        if in_coverage is not None and "full" in self.estimators:
            rows = np.flatnonzero(in_coverage)
            out["gated"] = self.estimators["full"].region_iou(latent[rows], take(columns, rows))
        return out


def error(estimate: float | None, real: float | None) -> float | None:
    """The error `estimate` - `real`; None when either is missing."""
    return estimate - real if estimate is not None and real is not None else None


def covered(novelty_pct: np.ndarray, limit: float = COVERAGE_PERCENTILE) -> np.ndarray:
    """Boolean (N,): patches inside the reference's coverage (novelty <= `limit`)."""
    nov = np.asarray(novelty_pct, np.float64)
    return np.isfinite(nov) & (nov <= limit)


# -- the interval --------------------------------------------------------------------------

def interval(iou: float | None, method_rmse: float | None,
             noise_se: float = 0.0) -> tuple[float | None, float | None]:
    """90 % interval: iou +- Z90 * sqrt(rmse^2 + se^2), clipped to [0, 1]."""
    if iou is None or method_rmse is None or not np.isfinite(method_rmse):
        return None, None
    half = Z90 * float(np.hypot(method_rmse, noise_se))
    return max(0.0, iou - half), min(1.0, iou + half)


def noise_se(est: ConfusionEstimator, latent: np.ndarray, columns: Mapping[str, np.ndarray],
             sd_fp: float, sd_fn: float) -> float:
    """Standard error of the overall IoU from independent per-patch errors (delta method).

    `sd_fp`, `sd_fn`: standard deviations of the per-patch share residuals (held-out).
    """
    if latent.shape[0] == 0:
        return 0.0
    fp, fn = est.predict(latent, columns)
    v = valid_pixels(columns)
    pred = np.asarray(columns["pred_frac"], np.float64) * v
    a = pred.sum() - np.minimum(fp * v, pred).sum()
    b = pred.sum() + (fn * v).sum()
    if b <= 0:
        return 0.0
    s2 = (v ** 2).sum()
    return float(np.sqrt(sd_fp ** 2 * s2 / b ** 2 + sd_fn ** 2 * a ** 2 * s2 / b ** 4))


# -- a new region -----------------------------------------------------------------------

def model_from_manifest(entry: Mapping[str, Any],
                        arrays: Mapping[str, np.ndarray]) -> RegionModel:
    """Rebuild the reference's RegionModel from its manifest `region` entry and arrays."""
    ests = {kind: ConfusionEstimator.from_arrays(arrays, f"region_{kind}", spec["features"])
            for kind, spec in entry.get("estimators", {}).items()}
    return RegionModel(entry.get("atc_threshold"), ests)


def region_report(model: RegionModel, latent: np.ndarray, columns: Mapping[str, np.ndarray],
                  novelty_pct: np.ndarray, interval_entry: Mapping[str, Any]) -> dict[str, Any]:
    """The headline region estimate of a new region: gated IoU, 90 % interval, coverage.

    Every method's figure is listed too; with labels, the real overall IoU (of the whole
    region and of its covered patches) and each method's error.
    """
    inside = covered(novelty_pct)
    rows = np.flatnonzero(inside)
    est = model.estimate(latent, columns, inside)
    se = 0.0
    sd = interval_entry.get("residual_sd") or {}
    if "full" in model.estimators and sd:
        se = noise_se(model.estimators["full"], latent[rows], take(columns, rows),
                      float(sd.get("fp", 0.0)), float(sd.get("fn", 0.0)))
    lo, hi = interval(est.get("gated"), interval_entry.get("method_rmse"), se)
    n = latent.shape[0]
    out: dict[str, Any] = {
        "method": "gated", "iou": est.get("gated"),
        "interval90": [lo, hi] if lo is not None else None,
        "patches": int(n), "covered_patches": int(rows.size),
        "covered_share": float(rows.size / n) if n else None,
        "out_of_coverage_share": float(1.0 - rows.size / n) if n else None,
        "coverage_percentile": COVERAGE_PERCENTILE, "methods": est,
    }
    real = real_overall_iou(columns, np.arange(n))
    if real is not None:
        real_cov = real_overall_iou(columns, rows)
        out["real_iou"] = real
        out["real_iou_covered"] = real_cov
        out["errors"] = {m: error(v, real_cov if m == "gated" else real)
                         for m, v in est.items()}
        out["in_interval"] = (bool(lo <= real_cov <= hi) if lo is not None and hi is not None
                              and real_cov is not None else None)
    return out
