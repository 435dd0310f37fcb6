"""Write a small synthetic bundle per docs/bundle-format.md with numpy + GDAL + QGIS only.

Used by the plugin tests (until the real pipeline's `tiny_bundle` fixture is available)
and by bench/dock.py (100,000 points). Needs an initialised QgsApplication.

Layout of the synthetic data: `n_images` images side by side (different regions),
each cut into a `grid` of patches of `patch_px` pixels. Patches fall into `n_clusters`
blobs on the latent plane; IoU rises with pc1, so the heatmap and colours mean something.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
from osgeo import gdal, osr
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransformContext,
    QgsFeature,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

REGIONS = ("austin", "vienna", "chicago", "tyrol", "kitsap")

PATCH_FIELDS = [
    ("patch_id", QVariant.LongLong), ("image", QVariant.String), ("region", QVariant.String),
    ("split", QVariant.String), ("row_off", QVariant.LongLong), ("col_off", QVariant.LongLong),
    ("height", QVariant.LongLong), ("width", QVariant.LongLong), ("iou", QVariant.Double),
    ("est_iou", QVariant.Double), ("est_iou_2d", QVariant.Double), ("pc1", QVariant.Double),
    ("pc2", QVariant.Double), ("cluster", QVariant.LongLong), ("label_frac", QVariant.Double),
    ("pred_frac", QVariant.Double), ("accuracy", QVariant.Double),
    ("precision", QVariant.Double), ("recall", QVariant.Double), ("entropy", QVariant.Double),
    ("confidence", QVariant.Double), ("uncertain_frac", QVariant.Double),
    ("novelty", QVariant.Double),
]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_tif(path: Path, data: np.ndarray, gt: tuple[float, ...], wkt: str,
               nodata: float | None = None) -> None:
    """A GeoTIFF (bands first for 3-D arrays)."""
    arr = data if data.ndim == 3 else data[None]
    gdal_type = {np.dtype(np.uint8): gdal.GDT_Byte,
                 np.dtype(np.float32): gdal.GDT_Float32}[arr.dtype]
    drv = gdal.GetDriverByName("GTiff")
    ds = drv.Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], gdal_type,
                    options=["COMPRESS=DEFLATE", "TILED=YES"])
    ds.SetGeoTransform(gt)
    ds.SetProjection(wkt)
    for b in range(arr.shape[0]):
        band = ds.GetRasterBand(b + 1)
        band.WriteArray(arr[b])
        if nodata is not None:
            band.SetNoDataValue(nodata)
    if arr.shape[0] == 3:
        for b, ci in enumerate((gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand)):
            ds.GetRasterBand(b + 1).SetColorInterpretation(ci)
    ds.FlushCache()
    ds = None


def _writer(path: Path, layer: str, fields: QgsFields, geom: int,
            crs: QgsCoordinateReferenceSystem, first: bool) -> QgsVectorFileWriter:
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = layer
    opts.actionOnExistingFile = (QgsVectorFileWriter.CreateOrOverwriteFile if first
                                 else QgsVectorFileWriter.CreateOrOverwriteLayer)
    w = QgsVectorFileWriter.create(str(path), fields, geom, crs,
                                   QgsCoordinateTransformContext(), opts)
    if w.hasError() != QgsVectorFileWriter.NoError:
        raise RuntimeError(f"{path}: cannot write layer {layer}: {w.errorMessage()}")
    return w


def _fields(spec: list[tuple[str, int]]) -> QgsFields:
    fields = QgsFields()
    for name, t in spec:
        fields.append(QgsField(name, t))
    return fields


def write_bundle(root: str | Path, *, kind: str = "analysis", n_images: int = 2,
                 grid: tuple[int, int] = (6, 6), patch_px: int = 16, thumb: int = 16,
                 n_clusters: int = 4, seed: int = 0, iou_convention: str = "zero",
                 epsg: int = 32615, pixel: float = 0.3, rasters: bool = True,
                 reference: str | Path | None = None) -> Path:
    """Write a complete bundle folder `root` (should end in .segx) and return its path."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / "arrays").mkdir(parents=True, exist_ok=True)
    (root / "rasters").mkdir(exist_ok=True)
    images_dir = root.parent / f"{root.stem}_images"
    images_dir.mkdir(exist_ok=True)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    wkt = srs.ExportToWkt()
    crs = QgsCoordinateReferenceSystem(f"EPSG:{epsg}")
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
    novelty = np.clip(np.hypot(pc1 - 0.0, pc2 - 0.0) * 12, 0, 100)

    # rasters -------------------------------------------------------------------------
    images = []
    regions = [REGIONS[i % len(REGIONS)] for i in range(n_images)]
    names = [f"{regions[i]}{i + 1}" for i in range(n_images)]
    for i, name in enumerate(names):
        x0 = 620000.0 + i * (w_px + patch_px) * pixel
        y0 = 3350000.0
        gt = (x0, pixel, 0.0, y0, 0.0, -pixel)
        rec = {"name": name, "path": str(images_dir / f"{name}.tif"), "label": None,
               "region": regions[i], "split": split_name, "crs_wkt": wkt,
               "transform": [pixel, 0.0, x0, 0.0, -pixel, y0], "width": w_px,
               "height": h_px, "prediction": None, "confusion": None, "counts": {}}
        if rasters:
            img = rng.integers(0, 255, size=(3, h_px, w_px), dtype=np.uint8)
            _write_tif(Path(rec["path"]), img, gt, wkt)
            lab = (rng.random((h_px, w_px)) < 0.3).astype(np.uint8)
            pred = lab.copy()
            flip = rng.random((h_px, w_px)) < 0.1
            pred[flip] = 1 - pred[flip]
            _write_tif(root / "rasters" / f"{name}_pred.tif", pred, gt, wkt, 255)
            rec["prediction"] = f"rasters/{name}_pred.tif"
            if labelled:
                conf = np.zeros_like(pred)
                conf[(lab == 1) & (pred == 1)] = 1
                conf[(lab == 0) & (pred == 1)] = 2
                conf[(lab == 1) & (pred == 0)] = 3
                _write_tif(root / "rasters" / f"{name}_confusion.tif", conf, gt, wkt, 255)
                rec["confusion"] = f"rasters/{name}_confusion.tif"
                rec["label"] = str(images_dir / f"{name}_gt.tif")
                _write_tif(Path(rec["label"]), lab * 255, gt, wkt)
                rec["counts"] = {k: int((conf == v).sum()) for k, v in
                                 (("tn", 0), ("tp", 1), ("fp", 2), ("fn", 3))}
            else:
                sl = slice(i * per_image, (i + 1) * per_image)
                est = est_iou[sl].reshape(gy, gx).astype(np.float32)
                egt = (x0, pixel * patch_px, 0.0, y0, 0.0, -pixel * patch_px)
                _write_tif(root / "rasters" / f"{name}_est_iou.tif", est, egt, wkt,
                           float("nan"))
                rec["est_iou"] = f"rasters/{name}_est_iou.tif"
        images.append(rec)

    # GeoPackage ----------------------------------------------------------------------
    gpkg = root / "patches.gpkg"
    fields = _fields(PATCH_FIELDS)
    w = _writer(gpkg, "patches", fields, QgsWkbTypes.Polygon, crs, first=True)
    feats = []
    for pid in range(n):
        i, local = divmod(pid, per_image)
        r, c = divmod(local, gx)
        x0 = 620000.0 + i * (w_px + patch_px) * pixel + c * patch_px * pixel
        y1 = 3350000.0 - r * patch_px * pixel
        f = QgsFeature(fields)
        f.setGeometry(QgsGeometry.fromRect(
            QgsRectangle(x0, y1 - patch_px * pixel, x0 + patch_px * pixel, y1)))

        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else float(v)

        f.setAttributes([
            pid, names[i], regions[i], split_name, r * patch_px, c * patch_px, patch_px,
            patch_px, num(iou[pid]), float(est_iou[pid]), float(est_iou_2d[pid]),
            float(pc1[pid]), float(pc2[pid]), int(cl[pid]), num(label_frac[pid]),
            float(pred_frac[pid]), num(0.9 if labelled else math.nan),
            num(0.8 if labelled else math.nan), num(0.8 if labelled else math.nan),
            0.2, 0.9, 0.05, float(novelty[pid]) if not labelled else None])
        feats.append(f)
    w.addFeatures(feats)
    del w

    cfields = _fields([("cluster", QVariant.LongLong), ("size", QVariant.LongLong),
                       ("mean_iou", QVariant.Double), ("median_iou", QVariant.Double),
                       ("label_frac", QVariant.Double), ("pred_frac", QVariant.Double),
                       ("region_mix", QVariant.String),
                       ("representatives", QVariant.String)])
    w = _writer(gpkg, "clusters", cfields, QgsWkbTypes.NoGeometry, crs, first=False)
    region_of = np.repeat(np.array(regions, dtype=object), per_image)
    score = est_iou if not labelled else iou
    cfeats = []
    for c in sorted(set(cl.tolist())):
        members = np.flatnonzero(cl == c)
        vals = score[members]
        vals = vals[np.isfinite(vals)]
        mix: dict[str, int] = {}
        for reg in region_of[members]:
            mix[str(reg)] = mix.get(str(reg), 0) + 1
        f = QgsFeature(cfields)
        f.setAttributes([int(c), int(members.size),
                         float(vals.mean()) if vals.size else None,
                         float(np.median(vals)) if vals.size else None,
                         float(np.nanmean(label_frac[members])) if labelled else None,
                         float(pred_frac[members].mean()), json.dumps(mix),
                         json.dumps([int(m) for m in members[:5]])])
        cfeats.append(f)
    w.addFeatures(cfeats)
    del w

    evr = [0.31, 0.17] + [0.05] * (k_dims - 2)
    heat_extent = [float(pc1.min()) - 1, float(pc1.max()) + 1,
                   float(pc2.min()) - 1, float(pc2.max()) + 1]
    hh, hw = 48, 64
    gxs = np.linspace(heat_extent[0], heat_extent[1], hw)
    heat = np.clip(0.5 + 0.09 * gxs, 0, 1)[None, :].repeat(hh, axis=0).astype(np.float32)
    manifest = {
        "schema": "segexplain-bundle", "schema_version": 1, "complete": True,
        "kind": kind, "created": "2026-11-30T12:00:00Z", "segexplain_version": "0.1.0",
        "n_patches": n, "crs_wkt": wkt, "iou_convention": iou_convention,
        "patch_size": patch_px, "stride": patch_px,
        "model": {"path": "model", "arch": "unet", "encoder": "resnet18", "sha256": "0" * 64},
        "images": images,
        "pca": {"n_components": k_dims, "explained_variance_ratio": evr[:2]},
        "heatmap": {"extent": heat_extent, "shape": [hh, hw], "vmin": 0.0, "vmax": 1.0},
        "estimators": {"mlp2d": {"mae": 0.08, "r2": 0.6, "spearman": 0.7, "folds": 5,
                                 "arrays": []}},
        "clustering": {"method": "kmeans", "k": n_clusters, "silhouette": 0.4, "sweep": {}},
        "stats": {"overall": {"mean_iou": float(np.nanmean(iou)) if labelled else None}},
    }
    if not labelled:
        manifest["novelty"] = {"k": 10, "reference_distances_percentiles": [0.0, 1.0]}
        manifest["reference"] = str(reference) if reference is not None else None
    rm = _fields([("key", QVariant.String), ("value", QVariant.String)])
    w = _writer(gpkg, "run_metadata", rm, QgsWkbTypes.NoGeometry, crs, first=False)
    rfeats = []
    for key in ("model", "iou_convention", "pca", "estimators", "created"):
        f = QgsFeature(rm)
        f.setAttributes([key, json.dumps(manifest[key])])
        rfeats.append(f)
    w.addFeatures(rfeats)
    del w

    arrays = {
        "embeddings": rng.normal(0, 1, size=(n, 16)).astype(np.float16),
        "latent": latent,
        "pca_mean": np.zeros(16, np.float32),
        "pca_components": rng.normal(0, 1, size=(k_dims, 16)).astype(np.float32),
        "pca_explained_variance_ratio": np.array(evr, np.float32),
        "heatmap": heat,
        "thumbs_image": rng.integers(0, 255, size=(n, thumb, thumb, 3), dtype=np.uint8),
        "thumbs_pred": (rng.random((n, thumb, thumb)) < 0.3).astype(np.uint8),
    }
    if labelled:
        arrays["thumbs_label"] = (rng.random((n, thumb, thumb)) < 0.3).astype(np.uint8)
    for key, arr in arrays.items():
        np.save(root / "arrays" / f"{key}.npy", arr, allow_pickle=False)
    files = {"patches.gpkg": _sha256(gpkg)}
    for p in sorted((root / "rasters").glob("*.tif")):
        files[f"rasters/{p.name}"] = _sha256(p)
    manifest["files"] = files
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return root
