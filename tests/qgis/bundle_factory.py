"""Write a small synthetic bundle with the core's own bundle writer (docs/bundle-format.md).

Used by the plugin tests when the real pipeline's bundles are not wanted
(SEGEXPLAIN_SYNTHETIC_BUNDLES=1) and by bench/dock.py (100,000 points). The writing runs
in a child process of the worker Python (`sys.executable`), as every core run of the
plugin does: `core.bundle.writer` (GDAL's OGR, rasterio, shapely) never loads into the
QGIS process. The writer fixes the GeoPackage layers, their columns and types, how arrays
are stored and the manifest's envelope; what it cannot fix (the manifest's keys, the
image records, the array names) test_bundle_factory.py checks against real bundles.

Layout of the synthetic data: `n_images` images side by side (different regions), each
cut into a `grid` of patches of `patch_px` pixels. Patches fall into `n_clusters` blobs
on the latent plane; IoU rises with pc1, so the heatmap and colours mean something.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

REGIONS = ("austin", "vienna", "chicago", "tyrol", "kitsap")
#: Estimators whose weights an analysis bundle carries (as `segexplain analyze` writes).
ESTIMATORS = {"mlp2d": ["pc1", "pc2"], "full": ["pc1", "pc2", "pc3", "entropy", "confidence"],
              "latent": ["pc1", "pc2", "pc3", "pc4"]}
#: Manifest keys copied into the run_metadata table (as core.bundle.manifest does).
RUN_METADATA_KEYS = ("kind", "created", "segexplain_version", "model", "data",
                     "iou_convention", "patch_size", "stride", "versions", "pca", "estimators",
                     "clustering", "novelty", "stats", "reference", "estimate_scores",
                     "region", "baselines", "region_estimate")


def write_bundle(root: str | Path, *, kind: str = "analysis", n_images: int = 2,
                 grid: tuple[int, int] = (6, 6), patch_px: int = 16, thumb: int = 16,
                 n_clusters: int = 4, seed: int = 0, iou_convention: str = "zero",
                 epsg: int = 32615, pixel: float = 0.3, rasters: bool = True,
                 reference: str | Path | None = None) -> Path:
    """Write a complete bundle folder `root` (NAME.segx) and return its path."""
    options = {"root": str(root), "kind": kind, "n_images": n_images, "grid": list(grid),
               "patch_px": patch_px, "thumb": thumb, "n_clusters": n_clusters, "seed": seed,
               "iou_convention": iou_convention, "epsg": epsg, "pixel": pixel,
               "rasters": rasters, "reference": None if reference is None else str(reference)}
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), json.dumps(options)],
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"synthetic bundle {root}: the writer exited {proc.returncode}\n"
                           f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return Path(root)


# -- the child process ---------------------------------------------------------------------
def _write_tif(path: Path, data: np.ndarray, transform: tuple[float, ...], crs_wkt: str,
               nodata: float | None = None) -> None:
    """A GeoTIFF (bands first for 3-D arrays)."""
    import rasterio
    from rasterio.transform import Affine

    arr = data if data.ndim == 3 else data[None]
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1],
                       count=arr.shape[0], dtype=arr.dtype, crs=rasterio.crs.CRS.from_wkt(crs_wkt),
                       transform=Affine(*transform), nodata=nodata, compress="deflate",
                       tiled=True) as dst:
        dst.write(arr)


def _estimator_entry(name: str, features: list[str], estimate: bool) -> dict[str, Any]:
    arrays = sorted([f"{name}_W{i}" for i in range(3)] + [f"{name}_b{i}" for i in range(3)]
                    + [f"{name}_fill", f"{name}_scaler_mean", f"{name}_scaler_scale"])
    entry: dict[str, Any] = {"features": features, "arrays": arrays, "layers": 3,
                             "activation": "relu", "output": "identity, clipped to [0, 1]",
                             "mae": 0.08, "r2": 0.6, "spearman": 0.7, "n": 0, "folds": 5,
                             "grouping": "image"}
    if not estimate:
        entry.update({"fold_scores": [], "by_split": {}})
    return entry


def _write(root: Path, *, kind: str, n_images: int, grid: list[int], patch_px: int,
           thumb: int, n_clusters: int, seed: int, iou_convention: str, epsg: int,
           pixel: float, rasters: bool, reference: str | None) -> None:
    import shapely
    from rasterio.crs import CRS
    from segexplain.core import __version__
    from segexplain.core.analytics.region import COVERAGE_PERCENTILE, METHODS, Z90
    from segexplain.core.bundle.similarity import latent_space_id
    from segexplain.core.bundle.validity import LABEL_ERRORS, coverage_entry
    from segexplain.core.bundle.writer import BundleWriter, est_iou_raster, write_float_raster
    from segexplain.core.engine.records import ImageRecord, PatchTable

    rng = np.random.default_rng(seed)
    images_dir = root.parent / f"{root.stem}_images"
    images_dir.mkdir(parents=True, exist_ok=True)
    wkt = CRS.from_epsg(epsg).to_wkt()
    labelled = kind == "analysis"
    split_name = "train" if labelled else "new"
    gx, gy = grid
    w_px, h_px = gx * patch_px, gy * patch_px
    per_image = gx * gy
    n = n_images * per_image

    # latent plane: blobs, IoU rising with pc1 ----------------------------------------
    centres = rng.uniform(-4, 4, size=(n_clusters, 2))
    if not labelled:
        centres = centres + np.array([2.5, -1.0])  # a new region lies partly elsewhere
    cluster = rng.integers(0, n_clusters, size=n)
    k_dims = 8
    latent = rng.normal(0, 1, size=(n, k_dims)).astype(np.float32)
    latent[:, :2] = centres[cluster] + rng.normal(0, 0.8, size=(n, 2))
    pc1, pc2 = latent[:, 0].astype(float), latent[:, 1].astype(float)
    true_iou = np.clip(0.5 + 0.09 * pc1 + rng.normal(0, 0.08, n), 0.0, 1.0)
    est_iou = np.clip(true_iou + rng.normal(0, 0.05, n), 0.0, 1.0)
    est_iou_2d = np.clip(0.5 + 0.09 * pc1, 0.0, 1.0)
    label_frac = np.clip(rng.beta(2, 5, n), 0, 1)
    label_frac[rng.random(n) < 0.1] = 0.0
    pred_frac = np.clip(label_frac + rng.normal(0, 0.03, n), 0, 1)
    iou = true_iou.copy()
    both_empty = (label_frac == 0) & (pred_frac == 0)
    iou[both_empty] = {"zero": 0.0, "one": 1.0, "exclude": np.nan}[iou_convention]
    cl = cluster.astype(np.int64)
    cl[rng.random(n) < 0.03] = -1  # DBSCAN-style noise
    if not labelled:
        iou[:] = np.nan
        label_frac[:] = np.nan
    novelty = np.clip(np.hypot(pc1, pc2) * 12, 0, 100)
    covered = (novelty <= COVERAGE_PERCENTILE).astype(np.int64)
    nan = np.full(n, np.nan)
    # confident disagreement with the label: mostly none, a few patches with a lot
    conf_fp = np.where(rng.random(n) < 0.1, rng.uniform(0.005, 0.05, n), 0.0)
    conf_fn = np.where(rng.random(n) < 0.05, rng.uniform(0.005, 0.05, n), 0.0)
    regions = [REGIONS[i % len(REGIONS)] for i in range(n_images)]
    names = [f"{regions[i]}{i + 1}" for i in range(n_images)]
    image_of, local = np.divmod(np.arange(n), per_image)
    row, col = np.divmod(local, gx)
    x0 = 620000.0 + image_of * (w_px + patch_px) * pixel + col * patch_px * pixel
    y1 = 3350000.0 - row * patch_px * pixel
    columns = {
        "image": np.array(names, dtype=object)[image_of],
        "region": np.array(regions, dtype=object)[image_of],
        "split": np.full(n, split_name, dtype=object),
        "row_off": row * patch_px, "col_off": col * patch_px,
        "height": np.full(n, patch_px), "width": np.full(n, patch_px),
        "iou": iou, "label_frac": label_frac, "pred_frac": pred_frac,
        "accuracy": np.full(n, 0.9) if labelled else nan,
        "precision": np.full(n, 0.8) if labelled else nan,
        "recall": np.full(n, 0.8) if labelled else nan,
        "entropy": np.full(n, 0.2), "confidence": np.full(n, 0.9),
        "uncertain_frac": np.full(n, 0.05),
        "conf_fp_frac": conf_fp if labelled else nan,
        "conf_fn_frac": conf_fn if labelled else nan,
    }

    with BundleWriter(root) as writer:
        # rasters -----------------------------------------------------------------------
        images = []
        for i, name in enumerate(names):
            gt = (pixel, 0.0, 620000.0 + i * (w_px + patch_px) * pixel, 0.0, -pixel, 3350000.0)
            rec = ImageRecord(name=name, path=str(images_dir / f"{name}.tif"), label=None,
                              region=regions[i], split=split_name, crs_wkt=wkt, transform=gt,
                              width=w_px, height=h_px)
            if rasters:
                img = rng.integers(0, 255, size=(3, h_px, w_px), dtype=np.uint8)
                _write_tif(Path(rec.path), img, gt, wkt)
                lab = (rng.random((h_px, w_px)) < 0.3).astype(np.uint8)
                pred = lab.copy()
                flip = rng.random((h_px, w_px)) < 0.1
                pred[flip] = 1 - pred[flip]
                rec.prediction = str(writer.raster_dir / f"{name}_pred.tif")
                _write_tif(Path(rec.prediction), pred, gt, wkt, 255)
                if labelled:
                    conf = np.zeros_like(pred)
                    conf[(lab == 1) & (pred == 1)] = 1
                    conf[(lab == 0) & (pred == 1)] = 2
                    conf[(lab == 1) & (pred == 0)] = 3
                    rec.confusion = str(writer.raster_dir / f"{name}_confusion.tif")
                    _write_tif(Path(rec.confusion), conf, gt, wkt, 255)
                    rec.label = str(images_dir / f"{name}_gt.tif")
                    _write_tif(Path(rec.label), lab * 255, gt, wkt)
                    rec.counts = {k: int((conf == v).sum()) for k, v in
                                  (("tn", 0), ("tp", 1), ("fp", 2), ("fn", 3))}
                else:
                    grid_, transform = est_iou_raster(rec, columns, est_iou, patch_px)
                    write_float_raster(writer.raster_dir / f"{name}_est_iou.tif", grid_,
                                       transform, wkt)
            d = rec.to_dict()
            d["transform"] = list(gt)
            d["prediction"] = writer.relative(rec.prediction)
            d["confusion"] = writer.relative(rec.confusion)
            if not labelled:
                d["est_iou"] = f"rasters/{name}_est_iou.tif" if rasters else None
            images.append(d)

        # GeoPackage: patches, clusters ---------------------------------------------------
        footprints = list(shapely.box(x0, y1 - patch_px * pixel, x0 + patch_px * pixel, y1))
        table = PatchTable(columns=columns, embeddings=np.zeros((n, 0), np.float32),
                           footprints=footprints, crs_wkt=wkt, images=[],
                           iou_convention=iou_convention)
        writer.write_patches(table, {"pc1": pc1, "pc2": pc2, "est_iou": est_iou,
                                     "est_iou_2d": est_iou_2d, "cluster": cl,
                                     "novelty": novelty, "covered": covered,
                                     "label_error": (conf_fp + conf_fn) if labelled
                                     else nan})
        score = iou if labelled else est_iou
        clusters = []
        for c in sorted(set(cl.tolist())):
            members = np.flatnonzero(cl == c)
            vals = score[members]
            vals = vals[np.isfinite(vals)]
            mix: dict[str, int] = {}
            for reg in columns["region"][members]:
                mix[str(reg)] = mix.get(str(reg), 0) + 1
            clusters.append({
                "cluster": int(c), "size": int(members.size),
                "mean_iou": float(vals.mean()) if vals.size else None,
                "median_iou": float(np.median(vals)) if vals.size else None,
                "label_frac": float(np.nanmean(label_frac[members])) if labelled else None,
                "pred_frac": float(pred_frac[members].mean()), "region_mix": mix,
                "representatives": [int(m) for m in members[:5]]})
        writer.write_clusters(clusters)

        # arrays ------------------------------------------------------------------------
        evr = np.array([0.31, 0.17] + [0.05] * (k_dims - 2), np.float32)
        heat_extent = [float(pc1.min()) - 1, float(pc1.max()) + 1,
                       float(pc2.min()) - 1, float(pc2.max()) + 1]
        hh, hw = 48, 64
        gxs = np.linspace(heat_extent[0], heat_extent[1], hw)
        heat = np.clip(0.5 + 0.09 * gxs, 0, 1)[None, :].repeat(hh, axis=0).astype(np.float32)
        arrays: dict[str, np.ndarray] = {
            "embeddings": rng.normal(0, 1, size=(n, 16)).astype(np.float16),
            "latent": latent,
            "pca_mean": np.zeros(16, np.float32),
            # one basis for every bundle: an estimate shares its reference's latent space
            "pca_components": np.random.default_rng(0).normal(0, 1, size=(k_dims, 16))
            .astype(np.float32),
            "pca_explained_variance_ratio": evr,
            "heatmap": heat,
            "thumbs_image": rng.integers(0, 255, size=(n, thumb, thumb, 3), dtype=np.uint8),
            "thumbs_pred": (rng.random((n, thumb, thumb)) < 0.3).astype(np.uint8),
            "novelty_distance": (novelty / 50).astype(np.float32),
        }
        if labelled:
            arrays["thumbs_label"] = (rng.random((n, thumb, thumb)) < 0.3).astype(np.uint8)
            for name, features in ESTIMATORS.items():
                sizes = [len(features), 8, 8, 1]
                for i in range(3):
                    arrays[f"{name}_W{i}"] = rng.normal(0, 0.3, sizes[i:i + 2]).astype(np.float32)
                    arrays[f"{name}_b{i}"] = np.zeros(sizes[i + 1], np.float32)
                arrays[f"{name}_fill"] = np.zeros(len(features), np.float32)
                arrays[f"{name}_scaler_mean"] = np.zeros(len(features), np.float32)
                arrays[f"{name}_scaler_scale"] = np.ones(len(features), np.float32)
            arrays["scaler2d_mean"] = arrays["mlp2d_scaler_mean"]
            arrays["scaler2d_scale"] = arrays["mlp2d_scaler_scale"]
            arrays["cluster_centers"] = (centres.astype(np.float32))
            arrays["novelty_reference_ids"] = np.arange(n, dtype=np.int64)
            arrays["novelty_reference_distances"] = np.sort(arrays["novelty_distance"]).astype(
                np.float64)
        for key, arr in arrays.items():
            writer.write_array(key, arr)

        # manifest ----------------------------------------------------------------------
        percentiles = np.linspace(0.0, 2.0, 21).tolist()
        manifest: dict[str, Any] = {
            "kind": kind, "created": "2026-11-30T12:00:00Z", "segexplain_version": __version__,
            "n_patches": n, "crs_wkt": wkt, "iou_convention": iou_convention,
            "has_labels": labelled, "data": str(images_dir), "patch_size": patch_px,
            "stride": patch_px, "backend": "auto",
            "model": {"path": "model", "arch": "unet", "encoder": "resnet18", "in_channels": 3,
                      "classes": 1, "sha256": "0" * 64},
            "versions": {"segexplain": __version__, "python": platform.python_version(),
                         "numpy": np.__version__},
            "images": images,
            "pca": {"n_components": k_dims, "n_features": 16,
                    "explained_variance_ratio": evr[:2].tolist(),
                    "explained_variance_ratio_total": float(evr.sum()), "normalize": "l2"},
            "estimators": {name: _estimator_entry(name, f, not labelled)
                           for name, f in ESTIMATORS.items()},
            "heatmap": {"extent": heat_extent, "shape": [hh, hw], "vmin": 0.0, "vmax": 1.0,
                        "estimator": "mlp2d"},
            "clustering": {"method": "kmeans", "k": n_clusters, "silhouette": 0.4, "sweep": {},
                           "dbscan": {}, "space": "pc1..pc2"},
            "novelty": {"k": 10, "space_dims": k_dims,
                        "space": "whitened PCA (pc / sqrt(explained variance ratio))",
                        "n_reference": n, "calibration": "leave-one-image-out",
                        "reference_distances_percentiles": percentiles},
            "stats": {"iou_convention": iou_convention,
                      "overall": {"mean_patch_iou": float(np.nanmean(iou)) if labelled
                                  else None},
                      "by_region": {}, "by_split": {}},
        }
        manifest["coverage"] = coverage_entry()
        manifest["latent_space"] = {
            "id": latent_space_id(arrays["pca_mean"], arrays["pca_components"]),
            "dims": k_dims, "similarity": "pc1..pcK / sqrt(explained variance ratio)"}
        gated = float(np.nanmean(est_iou[covered == 1])) if covered.any() else None
        if labelled:
            manifest.update({"seed": seed, "estimate_column": "full", "timings_s": {},
                             "notes": []})
            manifest["label_errors"] = LABEL_ERRORS
            manifest["region"] = {
                "figure": "overall IoU", "methods": list(METHODS), "headline": "gated",
                "estimator": "full", "coverage_percentile": COVERAGE_PERCENTILE,
                "atc_threshold": 2.5,
                "interval": {"level": 0.9, "z": Z90, "method_rmse": 0.08,
                             "residual_sd": 0.15, "from": "synthetic"}}
            rows = []
            for name in regions:
                m = columns["region"] == name
                real = float(np.nanmean(iou[m]))
                est = {k: float(np.clip(real + rng.normal(0, 0.05), 0, 1)) for k in METHODS}
                rows.append({"region": name, "patches": int(m.sum()), "real_iou": real,
                             "error_vs_expected": {"fp": 1.0, "fn": 1.0},
                             "covered_share": float(covered[m].mean()),
                             "real_iou_covered": real, "estimates": est,
                             "errors": {k: v - real for k, v in est.items()},
                             "gated_vs_region": est["gated"] - real,
                             "gated_interval": [est["gated"] - 0.13, est["gated"] + 0.13],
                             "gated_in_interval": True})
            manifest["baselines"] = {
                "unit": "region", "methods": list(METHODS), "rows": rows,
                "mae": {k: float(np.mean([abs(r["errors"][k]) for r in rows]))
                        for k in METHODS},
                "gated_rmse": 0.08, "residual_sd": 0.15,
                "capped": {"max_fit": 3000, "max_eval": 10000, "fit_capped": False,
                           "eval_capped": False, "folds": len(rows)},
                "coverage_percentile": COVERAGE_PERCENTILE, "seconds": 0.0}
            manifest["novelty"]["mean_by_split"] = {split_name: float(novelty.mean())}
        else:
            for entry in manifest["estimators"].values():
                entry.pop("fold_scores", None)
            manifest["clustering"]["assigned"] = "nearest centre"
            manifest["novelty"].update({"mean": float(novelty.mean()),
                                        "share_above_95": float(np.mean(novelty > 95))})
            manifest["region_estimate"] = {
                "method": "gated", "iou": gated,
                "interval90": None if gated is None else [max(0.0, gated - 0.13),
                                                          min(1.0, gated + 0.13)],
                "patches": n, "covered_patches": int(covered.sum()),
                "covered_share": float(covered.mean()),
                "out_of_coverage_share": float(1 - covered.mean()),
                "coverage_percentile": COVERAGE_PERCENTILE,
                "methods": {k: gated for k in METHODS}}
            manifest.update({
                "encoder_only": False, "estimator": "full",
                "reference": None if reference is None else str(Path(reference).resolve()),
                "reference_name": None if reference is None else Path(reference).name})
        writer.write_run_metadata({k: manifest[k] for k in RUN_METADATA_KEYS if k in manifest})
        writer.finish(manifest)


if __name__ == "__main__":
    opts = json.loads(sys.argv[1])
    _write(Path(opts.pop("root")), **opts)
