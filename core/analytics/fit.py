"""Fit the latent analytics on a labelled run: PCA, IoU estimators, heatmap, clusters, novelty.

`analyze_table` is pure computation on a `PatchTable`; `bundle.manifest.write_analysis`
writes its result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..engine.records import UNCERTAINTY_COLUMNS, PatchTable
from ..progress import NULL_PROGRESS, Progress
from .baselines import LeaveOneOut, fit_region_level
from .clustering import LatentClustering, cluster_table
from .confidence import estimator_features, with_derived
from .estimators import (
    ESTIMATOR_PARAMS,
    ESTIMATOR_SPECS,
    CrossValidation,
    MLPIoUEstimator,
    build_features,
    cross_validate,
    regression_scores,
)
from .label_errors import label_error_score
from .latent import LatentPCA, plane_grid, whiten
from .novelty import KNNNovelty
from .stats import run_statistics

#: minimum labelled patches (and images) to fit and validate the estimators
MIN_LABELLED = 10
#: fewer labelled patches than this: the estimators are fitted, with a warning
RELIABLE_LABELLED = 100
#: labelled patches per latent component given to the estimators (at least 2, at most
#: ESTIMATOR_SPECS' 20): a few hundred patches support only the plane's two components
#: before the MLP starts to fit noise (measured on the sample data: Spearman 0.80 with
#: 2 components, 0.74 with 8, 0.62 with 20 at 320 patches).
PATCHES_PER_COMPONENT = 150


@dataclass
class Analysis:
    """Everything `analyze_table` computed (N patches, K latent components)."""

    table: PatchTable
    pca: LatentPCA
    latent: np.ndarray                                  # (N, K) float32
    estimators: dict[str, MLPIoUEstimator] = field(default_factory=dict)
    features: dict[str, list[str]] = field(default_factory=dict)
    validation: dict[str, CrossValidation] = field(default_factory=dict)
    validation_by_split: dict[str, dict[str, Any]] = field(default_factory=dict)
    est_iou: np.ndarray | None = None                    # (N,) stronger estimator
    est_iou_2d: np.ndarray | None = None                 # (N,) 2-D MLP
    heatmap: np.ndarray | None = None                    # (H, W)
    heatmap_extent: list[float] | None = None
    clustering: LatentClustering | None = None
    clusters: list[dict[str, Any]] = field(default_factory=list)
    novelty: KNNNovelty | None = None
    novelty_reference: np.ndarray | None = None          # patch ids of the reference rows
    novelty_distance: np.ndarray | None = None           # (N,) raw kNN distance
    novelty_pct: np.ndarray | None = None                # (N,) percentile
    stats: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    atc_threshold: float | None = None                   # ATC's |logit| threshold (region.py)
    baselines: LeaveOneOut | None = None                 # region methods, leave-one-region-out
    label_error: np.ndarray | None = None                # (N,) label-disagreement score


def has_uncertainty(table: PatchTable) -> bool:
    """Whether the table carries the engine's uncertainty columns (the full estimator's input)."""
    return all(c in table.columns and np.isfinite(np.asarray(table.columns[c], float)).any()
               for c in (*UNCERTAINTY_COLUMNS, "pred_frac"))


def _novelty_reference_rows(table: PatchTable) -> np.ndarray:
    split = np.asarray(table.columns["split"]).astype(str)
    train = split == "train"
    return np.flatnonzero(train) if train.sum() >= 2 else np.arange(len(table))


def analyze_table(table: PatchTable, *, n_components: int = 50, clusters_max: int = 20,
                  seed: int = 0, folds: int = 5, heatmap_shape: tuple[int, int] = (128, 128),
                  novelty_k: int = 10, novelty_dims: int = 50,
                  progress: Progress = NULL_PROGRESS) -> Analysis:
    """Fit PCA, estimators, heatmap, clusters, novelty reference and statistics."""
    n = len(table)
    t0 = time.perf_counter()
    progress.stage("pca", 1)
    pca = LatentPCA(n_components=n_components).fit(table.embeddings)
    latent = pca.transform(table.embeddings)
    progress.advance()
    res = Analysis(table=table, pca=pca, latent=latent)
    res.timings["pca"] = time.perf_counter() - t0

    # -- estimators ------------------------------------------------------------------
    t0 = time.perf_counter()
    iou = np.asarray(table.columns["iou"], np.float64)
    groups = np.asarray(table.columns["image"]).astype(str)
    labelled = np.isfinite(iou)
    n_lab_images = len(set(groups[labelled].tolist()))
    names = ["mlp2d", "full", "latent"] if has_uncertainty(table) else ["mlp2d", "latent"]
    if labelled.sum() < MIN_LABELLED or n_lab_images < 2:
        res.notes.append(f"{int(labelled.sum())} labelled patches in {n_lab_images} image(s): "
                         "no IoU estimators (need at least "
                         f"{MIN_LABELLED} patches in 2 images)")
        names = []
    elif labelled.sum() < RELIABLE_LABELLED:
        res.notes.append(f"only {int(labelled.sum())} labelled patches: the IoU estimators "
                         "and their scores are rough (a few hundred patches make them useful)")
    progress.stage("estimators", len(names))
    cols = with_derived(table.columns)   # + the confidence features (confidence.py)
    for name in names:
        k_lat = min(ESTIMATOR_SPECS[name][0], latent.shape[1],
                    max(2, int(labelled.sum()) // PATCHES_PER_COMPONENT))
        fnames = estimator_features(name, k_lat, table.columns)
        x = build_features(latent, cols, fnames)
        params = {**ESTIMATOR_PARAMS[name], "random_state": seed}
        cv = cross_validate(params, x, iou, groups, n_splits=folds)
        est = MLPIoUEstimator(**params).fit(x, iou)
        pred = est.predict(x)
        oof = np.where(np.isfinite(cv.oof), cv.oof, pred).astype(np.float32)
        res.estimators[name], res.features[name], res.validation[name] = est, fnames, cv
        split = np.asarray(table.columns["split"]).astype(str)
        res.validation_by_split[name] = {
            s: regression_scores(iou[split == s], cv.oof[split == s])
            for s in sorted(set(split.tolist()))}
        if name == "mlp2d":
            res.est_iou_2d = oof
            grid_xy, extent = plane_grid(latent[:, :2], heatmap_shape)
            res.heatmap = est.predict(grid_xy).reshape(heatmap_shape)
            res.heatmap_extent = extent
        elif res.est_iou is None:
            res.est_iou = oof
        progress.log(f"estimator {name}: MAE {cv.scores['mae']:.3f}, R2 {cv.scores['r2']:.3f},"
                     f" Spearman {cv.scores['spearman']:.3f} ({cv.folds}-fold by "
                     f"{cv.grouping}, {cv.scores['n']} patches)")
        progress.advance()
    res.timings["estimators"] = time.perf_counter() - t0

    # -- clusters --------------------------------------------------------------------
    t0 = time.perf_counter()
    progress.stage("clusters", 1)
    if n >= 3:
        space = latent[:, :min(novelty_dims, latent.shape[1])]
        res.clustering = LatentClustering(k_max=max(2, min(clusters_max, n - 1)),
                                          random_state=seed).fit(space)
        res.clusters = cluster_table(res.clustering.labels_, space, table.columns)
        progress.log(f"clusters: {res.clustering.method_} k={res.clustering.k_} silhouette "
                     f"{res.clustering.silhouette_:.3f}")
    progress.advance()
    res.timings["clusters"] = time.perf_counter() - t0

    # -- novelty reference -----------------------------------------------------------
    t0 = time.perf_counter()
    progress.stage("novelty", 1)
    ref_rows = _novelty_reference_rows(table)
    space = whiten(latent[:, :novelty_dims], pca.explained_variance_ratio_)
    if ref_rows.size >= 2:
        nov = KNNNovelty(k=novelty_k, random_state=seed).fit(space[ref_rows], groups[ref_rows])
        ref_groups = groups[ref_rows] if nov.grouped_ else None
        dist = nov.distance(space, groups if nov.grouped_ else None, ref_groups)
        if not nov.grouped_:  # leave-one-out for the reference rows themselves
            dist[ref_rows] = nov.distance(space[ref_rows],
                                          exclude_self=np.arange(ref_rows.size))
        res.novelty, res.novelty_reference = nov, ref_rows.astype(np.int64)
        res.novelty_distance = dist.astype(np.float32)
        res.novelty_pct = nov.percentile(dist)
    progress.advance()
    res.timings["novelty"] = time.perf_counter() - t0

    # -- region level (region.py, baselines.py) and label errors ----------------------
    t0 = time.perf_counter()
    progress.stage("region methods", 1)
    k_full = min(ESTIMATOR_SPECS["full"][0], latent.shape[1],
                 max(2, int(labelled.sum()) // PATCHES_PER_COMPONENT))
    res.atc_threshold, res.baselines = fit_region_level(table, n_latent=k_full, seed=seed)
    res.label_error = label_error_score(table.columns)
    progress.advance()
    res.timings["region"] = time.perf_counter() - t0
    res.stats = run_statistics(table)
    return res
