"""Region-level IoU: one overall figure for many patches.

A region's overall IoU is total intersection over total union, which is the mean of
its patches' IoUs weighted by their unions: sum(IoU_i * union_i) / sum(union_i). Without
labels a patch's union is estimated as the pixels the model predicts plus those it
expects to miss, `(pred_frac + soft_fn_frac) * valid pixels`; the methods differ in the
per-patch IoU they weigh, or in how they count errors:

- ``mean_confidence``: the model's own probabilities read as calibrated (a predicted
  pixel is wrong with probability 1 - p, a background pixel with probability p):
  (sum P - sum soft_fp) / (sum P + sum soft_fn), P the predicted pixels;
- ``atc``: Average Thresholded Confidence (Garg et al., ICLR 2022) adapted to IoU: a
  pixel whose confidence |logit| is at or below a threshold counts as an error (a false
  positive where building is predicted, a false negative elsewhere); the threshold is
  the one that gives the reference its real overall IoU;
- ``mlp2d``: the source paper's 2-D MLP's per-patch estimates, union-weighted;
- ``full``: the stronger estimator's per-patch estimates, union-weighted;
- ``gated``: ``full`` on the patches inside the reference's coverage only (novelty at or
  below COVERAGE_PERCENTILE); the others are out of coverage and get no number.

The gated figure is the one `estimate` and `info` report, with a 90 % interval whose
width comes from the method's leave-one-region-out errors on the reference (see
`baselines`) and the patch-level noise of the weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..engine.metrics import HIST_BINS, HIST_LIMIT, HIST_WIDTH
from .confidence import CONFIDENCE_FEATURES, estimator_features
from .estimators import (
    ESTIMATOR_PARAMS,
    ESTIMATOR_SPECS,
    UNCERTAINTY_FEATURES,
    MLPIoUEstimator,
    build_features,
)

#: novelty percentile above which a patch is out of the reference's coverage
COVERAGE_PERCENTILE = 95.0
#: the region methods, weakest assumptions last
METHODS = ("mean_confidence", "atc", "mlp2d", "full", "gated")
#: two-sided 90 % normal quantile
Z90 = 1.6448536269514722
#: expected-error columns of the engine
SOFT_FEATURES = ("soft_fp_frac", "soft_fn_frac")


def valid_pixels(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Valid pixels per patch (N,) float64: the logit histogram's total, else the counts."""
    if "logit_hist" in columns and np.asarray(columns["logit_hist"]).ndim == 2:
        v = np.asarray(columns["logit_hist"], np.float64).sum(axis=1)
        if v.any():
            return v
    return np.nansum([np.asarray(columns[k], np.float64) for k in ("tp", "fp", "fn", "tn")],
                     axis=0)


def take(columns: Mapping[str, np.ndarray], rows: np.ndarray,
         names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """The columns (all, or `names` where present) at `rows`."""
    keys = columns if names is None else [k for k in names if k in columns]
    return {k: np.asarray(columns[k])[rows] for k in keys}


#: columns the region methods read
REGION_COLUMNS = ("iou", "pred_frac", *UNCERTAINTY_FEATURES, *SOFT_FEATURES,
                  *CONFIDENCE_FEATURES, "logit_hist", "tp", "fp", "fn", "tn", "split",
                  "image", "region")


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


# -- estimator-based methods --------------------------------------------------------------

def expected_union(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Estimated union per patch (N,) in pixels: predicted plus expected missed pixels."""
    v = valid_pixels(columns)
    u = (np.asarray(columns["pred_frac"], np.float64)
         + np.asarray(columns["soft_fn_frac"], np.float64)) * v
    return np.where(np.isfinite(u), u, 0.0)


def weighted_iou(est_iou: np.ndarray, columns: Mapping[str, np.ndarray]) -> float | None:
    """Union-weighted mean of per-patch IoU estimates: the region's overall IoU."""
    e = np.asarray(est_iou, np.float64)
    u = expected_union(columns)
    ok = np.isfinite(e) & (u > 0)
    return float((e[ok] * u[ok]).sum() / u[ok].sum()) if ok.any() else None


#: an IoU estimator and its feature names
Estimator = tuple[MLPIoUEstimator, list[str]]


@dataclass
class RegionModel:
    """The region methods of one reference: ATC's threshold and the IoU estimators.

    `estimators` maps "mlp2d" / "full" to an estimator and its features; `latent` and
    `columns` passed to `estimate` are aligned row by row and carry the confidence
    features (`confidence.with_derived`).
    """

    atc_threshold: float | None
    estimators: dict[str, Estimator]

    def estimate(self, latent: np.ndarray, columns: Mapping[str, np.ndarray],
                 in_coverage: np.ndarray | None = None) -> dict[str, float | None]:
        """Every method's overall IoU estimate for the given patches."""
        hist = np.asarray(columns["logit_hist"], np.float64).sum(axis=0)
        out: dict[str, float | None] = {
            "mean_confidence": mean_confidence_iou(columns, np.arange(latent.shape[0])),
            "atc": (atc_iou(hist, self.atc_threshold)
                    if self.atc_threshold is not None else None)}
        per_patch = {}
        for kind, (est, names) in self.estimators.items():
            per_patch[kind] = est.predict(build_features(latent, columns, names))
            out[kind] = weighted_iou(per_patch[kind], columns)
        if in_coverage is not None and "full" in per_patch:
            rows = np.flatnonzero(in_coverage)
            out["gated"] = (weighted_iou(per_patch["full"][rows], take(columns, rows))
                            if rows.size else None)
        return out

    def per_patch(self, latent: np.ndarray, columns: Mapping[str, np.ndarray],
                  kind: str = "full") -> np.ndarray:
        """Per-patch IoU estimates of one estimator."""
        est, names = self.estimators[kind]
        return est.predict(build_features(latent, columns, names)).astype(np.float64)


def fit_estimators(latent: np.ndarray, columns: Mapping[str, np.ndarray], *, n_latent: int,
                   seed: int = 0, max_fit: int | None = None) -> dict[str, Estimator]:
    """The analysis's ``mlp2d`` and ``full`` IoU estimators, fitted on labelled patches."""
    iou = np.asarray(columns["iou"], np.float64)
    out: dict[str, Estimator] = {}
    for kind in ("mlp2d", "full"):
        names = estimator_features(
            kind, min(ESTIMATOR_SPECS[kind][0], n_latent, latent.shape[1]), columns)
        params = {**ESTIMATOR_PARAMS[kind], "random_state": seed}
        if max_fit is not None:
            params["max_train_samples"] = min(max_fit, params.get("max_train_samples") or max_fit)
        out[kind] = (MLPIoUEstimator(**params).fit(build_features(latent, columns, names), iou),
                     names)
    return out


def fit_atc(columns: Mapping[str, np.ndarray]) -> float | None:
    """ATC's threshold for the labelled patches given (None without a real IoU)."""
    real = real_overall_iou(columns, np.arange(len(np.asarray(columns["pred_frac"]))))
    hist = np.asarray(columns["logit_hist"], np.float64).sum(axis=0)
    return fit_atc_threshold(hist, real) if real is not None else None


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


def noise_se(columns: Mapping[str, np.ndarray], sd: float) -> float:
    """Standard error of a union-weighted mean from independent per-patch errors of SD `sd`."""
    u = expected_union(columns)
    total = u.sum()
    return float(sd * np.sqrt((u ** 2).sum()) / total) if total > 0 else 0.0


# -- a new region -----------------------------------------------------------------------

def region_report(model: RegionModel, latent: np.ndarray, columns: Mapping[str, np.ndarray],
                  novelty_pct: np.ndarray, interval_entry: Mapping[str, Any]) -> dict[str, Any]:
    """The headline region estimate of a new region: gated IoU, 90 % interval, coverage.

    Every method's figure is listed too; with labels, the real overall IoU (of the whole
    region and of its covered patches) and each method's error.
    """
    inside = covered(novelty_pct)
    rows = np.flatnonzero(inside)
    est = model.estimate(latent, columns, inside)
    se = noise_se(take(columns, rows), float(interval_entry.get("residual_sd") or 0.0))
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
