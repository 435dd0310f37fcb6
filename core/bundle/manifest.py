"""Write an analysis or an estimate into a bundle: arrays, patch table, rasters, manifest."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .. import __version__
from ..analytics.apply import Estimate
from ..analytics.estimators import CrossValidation, MLPIoUEstimator
from ..analytics.fit import Analysis
from ..analytics.latent import LatentPCA
from ..analytics.novelty import KNNNovelty
from ..engine.records import PatchTable
from .reader import Bundle
from .validity import coverage_entry, latent_space_entry, patch_fields, region_entries
from .writer import BundleWriter, est_iou_raster, rows_by_image, write_float_raster


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
        **patch_fields(res.novelty_pct, res.label_error, n),
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
    manifest.update(region_entries(res))
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
            "stats", "reference", "estimate_scores", "region", "baselines",
            "region_estimate")
    return {k: manifest[k] for k in keys if k in manifest}


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
    by_image = rows_by_image(table.columns)
    for im in table.images:
        grid, transform = est_iou_raster(im, table.columns, est.est_iou, cell,
                                         by_image.get(im.name, np.zeros(0, np.int64)))
        path = writer.raster_dir / f"{im.name}_est_iou.tif"
        write_float_raster(path, grid, transform, im.crs_wkt)
    writer.write_patches(table, {
        "pc1": est.latent[:, 0], "pc2": est.latent[:, 1], "est_iou": est.est_iou,
        "est_iou_2d": est.est_iou_2d, "cluster": est.cluster, "novelty": est.novelty_pct,
        **patch_fields(est.novelty_pct, est.label_error, len(table))})
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
    manifest["coverage"] = coverage_entry()
    manifest["latent_space"] = latent_space_entry(est.pca, int(nov.get("space_dims") or 50))
    if est.region is not None:
        manifest["region_estimate"] = est.region
    manifest["stats"] = est.stats
    writer.write_run_metadata(_run_metadata(manifest))
    return manifest
