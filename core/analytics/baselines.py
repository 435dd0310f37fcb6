"""Region-level methods side by side, by leave-one-region-out over the labelled regions.

Each region in turn is held out: PCA, novelty reference, ATC threshold and the IoU
estimators (2-D MLP and stronger) are fitted on the other regions alone, as for a
region that has no labels; then every method of `region.METHODS` estimates the held-out
region's overall IoU, which is compared with its real overall IoU. ``gated`` claims a
figure only for the held-out patches inside the other regions' coverage, and is
compared with the real IoU of those patches (``gated_vs_region`` compares it with the
whole region's).

With fewer than 3 labelled regions the units are images instead (recorded as `unit`);
with more than `folds` units, GroupKFold holds out several units per fold, each still
scored on its own.

Cost is bounded whatever the table's size: each fold fits on at most `max_fit` labelled
patches (a seeded random subsample) and estimates each held-out unit from at most
`max_eval` of its patches (its real IoU always uses all of them); `capped` records it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.records import PatchTable
from .confidence import has_confidence, with_derived
from .latent import LatentPCA, whiten
from .novelty import KNNNovelty
from .region import (
    COVERAGE_PERCENTILE,
    METHODS,
    REGION_COLUMNS,
    RegionModel,
    covered,
    error,
    fit_atc,
    fit_estimators,
    interval,
    noise_se,
    real_overall_iou,
    take,
    valid_pixels,
)

#: at most this many folds (GroupKFold over the units beyond it)
MAX_FOLDS = 10
#: fewest units (regions, else images) for leave-one-out
MIN_UNITS = 3


@dataclass
class LeaveOneOut:
    """Per-unit real IoU, estimates and errors of every method, and their summary."""

    unit: str                                   # "region" or "image"
    rows: list[dict[str, Any]] = field(default_factory=list)
    mae: dict[str, float | None] = field(default_factory=dict)
    gated_rmse: float | None = None             # of gated vs its covered real IoU
    residual_sd: float = 0.0                    # of the full estimator's per-patch IoU
    capped: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the manifest's `baselines`)."""
        return {"unit": self.unit, "methods": list(METHODS), "rows": self.rows,
                "mae": self.mae, "gated_rmse": self.gated_rmse,
                "residual_sd": self.residual_sd, "capped": self.capped,
                "coverage_percentile": COVERAGE_PERCENTILE, "seconds": round(self.seconds, 2)}


def loo_units(columns: dict[str, np.ndarray]) -> tuple[str, np.ndarray] | None:
    """("region", region per patch) with >= MIN_UNITS labelled regions, else images."""
    labelled = np.isfinite(np.asarray(columns["tp"], np.float64))
    for name in ("region", "image"):
        units = np.asarray(columns[name]).astype(str)
        if len(set(units[labelled].tolist())) >= MIN_UNITS:
            return name, units
    return None


def calibration(columns: dict[str, np.ndarray]) -> dict[str, float | None]:
    """The model's real errors over the errors its probabilities expect, in these patches.

    `fp`: sum(fp) / sum(soft_fp), `fn`: sum(fn) / sum(soft_fn); 1 = calibrated, 5 = five
    times more errors than the model's confidence suggests (no label-free method that
    trusts the confidence can see those).
    """
    v = valid_pixels(columns)
    out: dict[str, float | None] = {}
    for kind in ("fp", "fn"):
        real = float(np.nansum(np.asarray(columns[kind], np.float64)))
        soft = float(np.nansum(np.asarray(columns[f"soft_{kind}_frac"], np.float64) * v))
        out[kind] = real / soft if soft > 0 else None
    return out


def _subsample(rows: np.ndarray, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or rows.size <= cap:
        return rows
    return np.sort(rng.choice(rows, cap, replace=False))


def _novelty_pct(pca: LatentPCA, lat_ref: np.ndarray, ref_cols: dict[str, np.ndarray],
                 lat_eval: np.ndarray, k: int, dims: int, seed: int) -> np.ndarray:
    evr = pca.explained_variance_ratio_
    space_ref = whiten(lat_ref[:, :dims], evr)
    split = np.asarray(ref_cols["split"]).astype(str)
    ref = np.flatnonzero(split == "train")
    ref = ref if ref.size >= 2 else np.arange(lat_ref.shape[0])
    groups = np.asarray(ref_cols["image"]).astype(str)[ref]
    nov = KNNNovelty(k=k, random_state=seed).fit(space_ref[ref], groups)
    return nov.score(whiten(lat_eval[:, :dims], evr)[:, :space_ref.shape[1]])


def leave_one_region_out(table: PatchTable, *, n_latent: int = 2, seed: int = 0,
                         max_fit: int = 3000, max_eval: int = 10000,
                         n_components: int = 50, novelty_k: int = 10, novelty_dims: int = 50,
                         folds: int = MAX_FOLDS) -> LeaveOneOut | None:
    """Leave-one-region-out comparison of the region methods; None when it cannot run.

    `n_latent`: latent components of the ``full`` estimator (as in the analysis). Needs
    the engine's confusion columns and at least MIN_UNITS units.
    """
    from sklearn.model_selection import GroupKFold

    t0 = time.perf_counter()
    cols = with_derived(table.columns)
    if not has_confidence(cols) or "tp" not in cols:
        return None
    found = loo_units(cols)
    if found is None:
        return None
    unit, units = found
    labelled = np.flatnonzero(np.isfinite(np.asarray(cols["tp"], np.float64))
                              & np.isfinite(np.asarray(cols["iou"], np.float64)))
    names = sorted(set(units[labelled].tolist()))
    rng = np.random.default_rng(seed)
    out = LeaveOneOut(unit=unit)
    n_folds = min(folds, len(names))
    code = {u: i for i, u in enumerate(names)}
    splitter = GroupKFold(n_splits=n_folds).split(
        labelled, groups=np.array([code[u] for u in units[labelled]]))
    residuals: list[np.ndarray] = []
    capped_fit = capped_eval = False
    results: dict[str, dict[str, Any]] = {}
    for fit_idx, test_idx in splitter:
        fit_rows = _subsample(labelled[fit_idx], max_fit, rng)
        capped_fit |= fit_rows.size < fit_idx.size
        ref_cols = take(cols, fit_rows, REGION_COLUMNS)
        pca = LatentPCA(n_components=min(n_components, fit_rows.size - 1)).fit(
            table.embeddings[fit_rows])
        lat_ref = pca.transform(table.embeddings[fit_rows])
        model = RegionModel(fit_atc(ref_cols),
                            fit_estimators(lat_ref, ref_cols, n_latent=n_latent, seed=seed))
        for name in sorted(set(units[labelled[test_idx]].tolist())):
            all_rows = np.flatnonzero(units == name)
            rows = _subsample(all_rows, max_eval, rng)
            capped_eval |= rows.size < all_rows.size
            ev_cols = take(cols, rows, REGION_COLUMNS)
            lat = pca.transform(table.embeddings[rows])
            pct = _novelty_pct(pca, lat_ref, ref_cols, lat, novelty_k, novelty_dims, seed)
            inside = covered(pct)
            est = model.estimate(lat, ev_cols, inside)
            residuals.append(model.per_patch(lat, ev_cols) - ev_cols["iou"])
            real = real_overall_iou(cols, all_rows)
            real_cov = real_overall_iou(ev_cols, np.flatnonzero(inside))
            errors = {m: error(est.get(m), real) for m in METHODS if m != "gated"}
            errors["gated"] = error(est.get("gated"), real_cov)
            results[name] = {
                unit: name, "patches": int(all_rows.size), "real_iou": real,
                "error_vs_expected": calibration(ev_cols),
                "covered_share": float(inside.mean()) if inside.size else None,
                "real_iou_covered": real_cov, "estimates": est, "errors": errors,
                "gated_vs_region": error(est.get("gated"), real),
                "_covered": take(ev_cols, np.flatnonzero(inside))}
    res = np.concatenate(residuals)
    out.residual_sd = float(np.nanstd(res)) if np.isfinite(res).any() else 0.0
    gated_err = {n: r["errors"]["gated"] for n, r in results.items()
                 if r["errors"]["gated"] is not None}
    out.gated_rmse = (float(np.sqrt(np.mean(np.square(list(gated_err.values())))))
                      if gated_err else None)
    for name in names:
        r = results[name]
        cov_cols = r.pop("_covered")
        others = [e for n, e in gated_err.items() if n != name]
        rmse = float(np.sqrt(np.mean(np.square(others)))) if others else None
        lo, hi = interval(r["estimates"].get("gated"), rmse, noise_se(cov_cols, out.residual_sd))
        r["gated_interval"] = [lo, hi] if lo is not None else None
        r["gated_in_interval"] = (bool(lo <= r["real_iou_covered"] <= hi)
                                  if lo is not None and hi is not None
                                  and r["real_iou_covered"] is not None else None)
        out.rows.append(r)
    for m in METHODS:
        errs = [abs(r["errors"][m]) for r in out.rows if r["errors"][m] is not None]
        out.mae[m] = float(np.mean(errs)) if errs else None
    out.capped = {"max_fit": max_fit, "max_eval": max_eval, "fit_capped": capped_fit,
                  "eval_capped": capped_eval, "folds": n_folds}
    out.seconds = time.perf_counter() - t0
    return out


def fit_region_level(table: PatchTable, *, n_latent: int,
                     seed: int = 0) -> tuple[float | None, LeaveOneOut | None]:
    """ATC's threshold on every labelled patch, and the leave-one-out comparison.

    (None, None) when the table lacks the engine's confusion columns (an encoder-only
    run) or labels. The other methods of a new region use the analysis's own IoU
    estimators.
    """
    cols = table.columns
    if not has_confidence(cols) or "tp" not in cols:
        return None, None
    labelled = np.flatnonzero(np.isfinite(np.asarray(cols["tp"], np.float64)))
    if labelled.size < 10:
        return None, None
    return (fit_atc(take(cols, labelled, REGION_COLUMNS)),
            leave_one_region_out(table, n_latent=n_latent, seed=seed))
