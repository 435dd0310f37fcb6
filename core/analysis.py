"""From a PatchTable to an analysis or estimate bundle: the latent analytics pipeline.

`analyze_table` (pure computation) fits, on the patches of a labelled run: the PCA
(latent plane + up to 50 components for distances), the IoU estimators with grouped
cross-validation, the heatmap, the clustering, the novelty reference and the
statistics. `write_analysis` writes it all through a `BundleWriter`.

`estimate_table` places the patches of a new region in a reference bundle's space with
the reference's stored arrays only (PCA, estimator weights, novelty reference), and
`write_estimate` writes the estimate bundle (with an estimated-IoU raster per image).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import __version__
from .bundle_reader import Bundle
from .bundle_writer import BundleWriter, est_iou_raster, write_float_raster
from .clustering import LatentClustering, cluster_table
from .errors import BundleError, ConfigurationError
from .estimators import (
    ESTIMATOR_PARAMS,
    ESTIMATOR_SPECS,
    CrossValidation,
    MLPIoUEstimator,
    build_features,
    cross_validate,
    feature_names,
    regression_scores,
)
from .latent import LatentPCA, plane_grid, whiten
from .novelty import KNNNovelty, auroc, knn_distance
from .progress import NULL_PROGRESS, Progress
from .records import UNCERTAINTY_COLUMNS, PatchTable
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


def _has_uncertainty(table: PatchTable) -> bool:
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
    names = ["mlp2d", "full", "latent"] if _has_uncertainty(table) else ["mlp2d", "latent"]
    if labelled.sum() < MIN_LABELLED or n_lab_images < 2:
        res.notes.append(f"{int(labelled.sum())} labelled patches in {n_lab_images} image(s): "
                         "no IoU estimators (need at least "
                         f"{MIN_LABELLED} patches in 2 images)")
        names = []
    elif labelled.sum() < RELIABLE_LABELLED:
        res.notes.append(f"only {int(labelled.sum())} labelled patches: the IoU estimators "
                         "and their scores are rough (a few hundred patches make them useful)")
    progress.stage("estimators", len(names))
    for name in names:
        k_lat, extra = ESTIMATOR_SPECS[name]
        k_lat = min(k_lat, latent.shape[1], max(2, int(labelled.sum()) // PATCHES_PER_COMPONENT))
        fnames = feature_names(k_lat, extra)
        x = build_features(latent, table.columns, fnames)
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
            dist[ref_rows] = knn_distance(space[ref_rows], space[ref_rows], nov.k,
                                          exclude_self=np.arange(ref_rows.size))
        res.novelty, res.novelty_reference = nov, ref_rows.astype(np.int64)
        res.novelty_distance = dist.astype(np.float32)
        res.novelty_pct = nov.percentile(dist)
    progress.advance()
    res.timings["novelty"] = time.perf_counter() - t0
    res.stats = run_statistics(table)
    return res


def _estimator_manifest(res_validation: dict[str, CrossValidation],
                        features: dict[str, list[str]],
                        estimators: dict[str, MLPIoUEstimator],
                        by_split: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, est in estimators.items():
        arrays = sorted(est.to_arrays(name))
        entry: dict[str, Any] = {"features": features[name], "arrays": arrays,
                                 "layers": len(est.weights_), "activation": "relu",
                                 "output": "identity, clipped to [0, 1]"}
        cv = res_validation.get(name)
        if cv is not None:
            entry.update({"mae": cv.scores["mae"], "r2": cv.scores["r2"],
                          "spearman": cv.scores["spearman"], "n": cv.scores["n"],
                          "folds": cv.folds, "grouping": cv.grouping,
                          "fold_scores": cv.fold_scores,
                          "by_split": by_split.get(name, {})})
        out[name] = entry
    return out


def _images_manifest(writer: BundleWriter, table: PatchTable) -> list[dict[str, Any]]:
    images = []
    for im in table.images:
        d = im.to_dict()
        d["prediction"] = writer.relative(im.prediction)
        d["confusion"] = writer.relative(im.confusion)
        images.append(d)
    return images


def _write_common(writer: BundleWriter, table: PatchTable, latent: np.ndarray,
                  pca: LatentPCA) -> None:
    writer.write_array("embeddings", table.embeddings.astype(np.float16))
    writer.write_array("latent", latent.astype(np.float32))
    writer.write_array("pca_mean", pca.mean_)
    writer.write_array("pca_components", pca.components_)
    writer.write_array("pca_explained_variance_ratio", pca.explained_variance_ratio_)
    for key, arr in table.thumbnails.items():
        writer.write_array(f"thumbs_{key}", arr.astype(np.uint8))


def write_analysis(writer: BundleWriter, res: Analysis,
                   run_info: dict[str, Any]) -> dict[str, Any]:
    """Write every file of `res` into the writer; returns the manifest for `finish`."""
    table = res.table
    _write_common(writer, table, res.latent, res.pca)
    for name, est in res.estimators.items():
        for key, arr in est.to_arrays(name).items():
            writer.write_array(key, arr)
    if "mlp2d" in res.estimators:  # the names docs/bundle-format.md gives the 2-D scaler
        writer.write_array("scaler2d_mean", res.estimators["mlp2d"].scaler_mean_)
        writer.write_array("scaler2d_scale", res.estimators["mlp2d"].scaler_scale_)
    if res.heatmap is not None:
        writer.write_array("heatmap", res.heatmap.astype(np.float32))
    if res.clustering is not None:
        writer.write_array("cluster_centers", res.clustering.centers_.astype(np.float32))
    if res.novelty is not None and res.novelty_reference is not None:
        writer.write_array("novelty_reference_ids", res.novelty_reference)
        writer.write_array("novelty_reference_distances", res.novelty.reference_distances_)
    if res.novelty_distance is not None:
        writer.write_array("novelty_distance", res.novelty_distance)
    n = len(table)
    nan = np.full(n, np.nan, np.float32)
    extra = {
        "pc1": res.latent[:, 0], "pc2": res.latent[:, 1],
        "est_iou": res.est_iou if res.est_iou is not None else nan,
        "est_iou_2d": res.est_iou_2d if res.est_iou_2d is not None else nan,
        "cluster": (res.clustering.labels_ if res.clustering is not None
                    else np.full(n, -1, np.int64)),
        "novelty": res.novelty_pct if res.novelty_pct is not None else nan,
    }
    writer.write_patches(table, extra)
    writer.write_clusters(res.clusters)
    manifest = _base_manifest("analysis", table, run_info, res.pca, writer)
    manifest["estimators"] = _estimator_manifest(res.validation, res.features, res.estimators,
                                                 res.validation_by_split)
    manifest["estimate_column"] = "full" if "full" in res.estimators else (
        "latent" if "latent" in res.estimators else None)
    if res.heatmap is not None and res.heatmap_extent is not None:
        manifest["heatmap"] = {"extent": res.heatmap_extent, "shape": list(res.heatmap.shape),
                               "vmin": 0.0, "vmax": 1.0, "estimator": "mlp2d"}
    if res.clustering is not None:
        manifest["clustering"] = {**res.clustering.summary(),
                                  "space": f"pc1..pc{res.clustering.centers_.shape[1]}"}
    if res.novelty is not None:
        manifest["novelty"] = _novelty_manifest(res.novelty, res.novelty_pct, table)
    manifest["stats"] = res.stats
    manifest["timings_s"] = {k: round(v, 3) for k, v in res.timings.items()}
    manifest["notes"] = res.notes
    writer.write_run_metadata(_run_metadata(manifest))
    return manifest


def _novelty_manifest(nov: KNNNovelty, pct: np.ndarray | None,
                      table: PatchTable) -> dict[str, Any]:
    dists = nov.reference_distances_
    out: dict[str, Any] = {
        "k": nov.k, "space_dims": int(nov.reference_.shape[1]),
        "space": "whitened PCA (pc / sqrt(explained variance ratio))",
        "n_reference": int(nov.reference_.shape[0]),
        "calibration": "leave-one-image-out" if nov.grouped_ else "leave-one-out",
        "reference_distances_percentiles": np.percentile(dists, np.arange(0, 101, 5)).tolist()
        if dists.size else [],
    }
    if pct is not None:
        split = np.asarray(table.columns["split"]).astype(str)
        out["mean_by_split"] = {s: float(np.nanmean(pct[split == s]))
                                for s in sorted(set(split.tolist()))}
    return out


def _base_manifest(kind: str, table: PatchTable, run_info: dict[str, Any], pca: LatentPCA,
                   writer: BundleWriter) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "segexplain_version": __version__,
        "n_patches": len(table),
        "crs_wkt": table.crs_wkt,
        "iou_convention": table.iou_convention,
        "has_labels": table.has_labels,
        **run_info,
        "images": _images_manifest(writer, table),
        "pca": {"n_components": int(pca.components_.shape[0]),
                "n_features": int(pca.components_.shape[1]),
                "explained_variance_ratio": pca.explained_variance_ratio_[:2].tolist(),
                "explained_variance_ratio_total": float(pca.explained_variance_ratio_.sum()),
                "normalize": pca.normalize},
    }


def _run_metadata(manifest: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "created", "segexplain_version", "model", "data", "iou_convention",
            "patch_size", "stride", "versions", "pca", "estimators", "clustering", "novelty",
            "stats", "reference", "estimate_scores")
    return {k: manifest[k] for k in keys if k in manifest}


# -- estimate ------------------------------------------------------------------------


@dataclass
class Estimate:
    """A new region placed in a reference bundle's space."""

    table: PatchTable
    latent: np.ndarray
    pca: LatentPCA
    est_iou: np.ndarray
    est_iou_2d: np.ndarray
    estimator: str
    cluster: np.ndarray
    novelty_distance: np.ndarray
    novelty_pct: np.ndarray
    scores: dict[str, Any] = field(default_factory=dict)
    novelty_auroc: float | None = None
    clusters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


def reference_estimators(ref: Bundle) -> dict[str, tuple[MLPIoUEstimator, list[str]]]:
    """Rebuild the reference bundle's estimators from its arrays (numpy only)."""
    out = {}
    for name, spec in ref.manifest.get("estimators", {}).items():
        arrays = {a: ref.array(a) for a in spec["arrays"]}
        out[name] = (MLPIoUEstimator.from_arrays(arrays, name), list(spec["features"]))
    return out


def estimate_table(table: PatchTable, ref: Bundle) -> Estimate:
    """Estimated IoU, novelty and cluster of each patch of `table` in `ref`'s space."""
    if ref.kind != "analysis":
        raise BundleError(f"{ref.path}: a {ref.kind} bundle; --reference must be an analysis "
                          "bundle written by `segexplain analyze`")
    pca = LatentPCA.from_arrays(ref.array("pca_mean"), ref.array("pca_components"),
                                ref.array("pca_explained_variance_ratio"),
                                normalize=ref.manifest.get("pca", {}).get("normalize", "none"))
    if table.embeddings.shape[1] != pca.n_features_in_:
        raise ConfigurationError(
            f"embeddings of {table.embeddings.shape[1]} dimensions, the reference "
            f"{ref.path.name} has {pca.n_features_in_}: use the reference's model "
            f"({ref.manifest.get('model', {}).get('path', 'see segexplain info')})")
    latent = pca.transform(table.embeddings)
    n = len(table)
    ests = reference_estimators(ref)
    chosen = "full" if "full" in ests and _has_uncertainty(table) else "latent"
    nan = np.full(n, np.nan, np.float32)
    est = nan
    if chosen in ests:
        e, names = ests[chosen]
        est = e.predict(build_features(latent, table.columns, names))
    est2 = nan
    if "mlp2d" in ests:
        e, names = ests["mlp2d"]
        est2 = e.predict(build_features(latent, table.columns, names))
    nov = ref.manifest.get("novelty") or {}
    if not nov:
        raise BundleError(f"{ref.path}: no novelty reference in the bundle; run "
                          "`segexplain analyze` again with this version")
    dims = int(nov["space_dims"])
    evr = pca.explained_variance_ratio_
    ref_latent = whiten(ref.array("latent")[ref.array("novelty_reference_ids")], evr)
    knn = KNNNovelty(k=int(nov["k"]))
    knn.reference_ = np.ascontiguousarray(ref_latent[:, :dims], np.float32)
    knn.reference_distances_ = ref.array("novelty_reference_distances")
    dist = knn.distance(whiten(latent, evr)[:, :dims])
    pct = knn.percentile(dist)
    cluster = np.full(n, -1, np.int64)
    if ref.has_array("cluster_centers"):
        centres = ref.array("cluster_centers")
        space = latent[:, :centres.shape[1]]
        d2 = ((space[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        cluster = np.argmin(d2, axis=1).astype(np.int64)
    out = Estimate(table=table, latent=latent, pca=pca, est_iou=est, est_iou_2d=est2,
                   estimator=chosen, cluster=cluster, novelty_distance=dist.astype(np.float32),
                   novelty_pct=pct)
    iou = np.asarray(table.columns["iou"], np.float64)
    if np.isfinite(iou).any():
        out.scores = {chosen: regression_scores(iou, est)}
        if "mlp2d" in ests:
            out.scores["mlp2d"] = regression_scores(iou, est2)
        if chosen != "latent" and "latent" in ests:
            e, names = ests["latent"]
            out.scores["latent"] = regression_scores(
                iou, e.predict(build_features(latent, table.columns, names)))
    if ref.has_array("novelty_distance"):
        split = np.asarray(ref.patches["split"]).astype(str)
        ref_dist = ref.array("novelty_distance")
        val = ref_dist[split == "val"]
        if val.size:
            out.novelty_auroc = auroc(dist, val)
    if n >= 1:
        out.clusters = cluster_table(cluster, latent[:, :dims], table.columns)
    out.stats = run_statistics(table)
    return out


def write_estimate(writer: BundleWriter, est: Estimate, ref: Bundle,
                   run_info: dict[str, Any]) -> dict[str, Any]:
    """Write the estimate bundle's files (estimated-IoU rasters included).

    Returns the manifest for `finish`.
    """
    table = est.table
    _write_common(writer, table, est.latent, est.pca)
    writer.write_array("novelty_distance", est.novelty_distance)
    hm = ref.heatmap()
    if hm is not None:
        writer.write_array("heatmap", hm[0])
    cell = int(run_info.get("stride") or run_info.get("patch_size") or 256)
    for im in table.images:
        grid, transform = est_iou_raster(im, table.columns, est.est_iou, cell)
        path = writer.raster_dir / f"{im.name}_est_iou.tif"
        write_float_raster(path, grid, transform, im.crs_wkt)
    writer.write_patches(table, {
        "pc1": est.latent[:, 0], "pc2": est.latent[:, 1], "est_iou": est.est_iou,
        "est_iou_2d": est.est_iou_2d, "cluster": est.cluster, "novelty": est.novelty_pct})
    writer.write_clusters(est.clusters)
    manifest = _base_manifest("estimate", table, run_info, est.pca, writer)
    for im in manifest["images"]:
        im["est_iou"] = f"rasters/{im['name']}_est_iou.tif"
    manifest["reference"] = str(ref.path.resolve())
    manifest["reference_name"] = ref.path.name
    manifest["estimator"] = est.estimator
    manifest["estimators"] = {k: {kk: vv for kk, vv in v.items()
                                  if kk not in ("fold_scores", "by_split")}
                              for k, v in ref.manifest.get("estimators", {}).items()}
    if hm is not None:
        manifest["heatmap"] = ref.manifest["heatmap"]
    if ref.manifest.get("clustering"):
        manifest["clustering"] = {**ref.manifest["clustering"], "assigned": "nearest centre"}
    nov = dict(ref.manifest.get("novelty", {}))
    nov.pop("mean_by_split", None)
    nov["mean"] = float(np.nanmean(est.novelty_pct)) if len(table) else None
    nov["share_above_95"] = float(np.mean(est.novelty_pct > 95)) if len(table) else None
    if est.novelty_auroc is not None:
        nov["auroc_vs_reference_val"] = est.novelty_auroc
    manifest["novelty"] = nov
    if est.scores:
        manifest["estimate_scores"] = est.scores
    manifest["stats"] = est.stats
    writer.write_run_metadata(_run_metadata(manifest))
    return manifest
