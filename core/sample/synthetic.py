"""Synthetic PatchTables with latent structure, for tests and benchmarks of the analytics.

`synthetic_table` builds what the engine would return for a run over `n_images` square
images of `grid` x `grid` patches in EPSG:32633: each patch has a latent "scene type"
(its cluster), its image's region shifts the embedding, the IoU depends smoothly on the
scene type and position in the embedding, and the uncertainty features follow the IoU
with noise (as a real model's do). The confusion counts (tp, fp, fn, tn), expected and
confident errors and the logit histogram agree with each patch's IoU and fractions.
Footprints are shapely boxes on the image grid; image records carry tp/fp/fn/tn counts
consistent with the patches.
"""

from __future__ import annotations

import numpy as np

from ..engine.metrics import HIST_BINS, HIST_LIMIT, HIST_WIDTH
from ..engine.records import ImageRecord, PatchTable

SYNTHETIC_CRS = "EPSG:32633"


def _crs_wkt() -> str:
    from pyproj import CRS

    return str(CRS.from_epsg(32633).to_wkt())


def synthetic_table(n_images: int = 8, grid: int = 4, dim: int = 64, *, n_types: int = 5,
                    regions: tuple[str, ...] = ("metro", "suburb", "farmland"),
                    patch: int = 64, seed: int = 0, region_shift: float = 0.0,
                    split: str | None = None, with_uncertainty: bool = True,
                    thumb: int = 8) -> PatchTable:
    """Build a PatchTable of `n_images * grid**2` patches with `dim`-D embeddings.

    `region_shift` moves every embedding along a fixed random direction (a new region
    lying off the reference); `split` forces one split for all images (else image 1 of
    each region is "val", the others "train").
    """
    rng = np.random.default_rng(seed)
    basis = np.random.default_rng(12345).normal(size=(n_types + len(regions) + 1, dim))
    type_centres = basis[:n_types] * 3.0
    region_centres = basis[n_types:n_types + len(regions)] * 1.0
    shift_dir = basis[-1] / np.linalg.norm(basis[-1])
    type_iou = np.linspace(0.15, 0.9, n_types)
    crs = _crs_wkt()
    from shapely.geometry import box

    cols: dict[str, list[object]] = {k: [] for k in (
        "image", "region", "split", "row_off", "col_off", "height", "width")}
    embs, ious, footprints, images = [], [], [], []
    per_region: dict[str, int] = {}
    for i in range(n_images):
        region = regions[i % len(regions)]
        per_region[region] = per_region.get(region, 0) + 1
        name = f"{region}{per_region[region]}"
        im_split = split or ("val" if per_region[region] == 1 and n_images > len(regions)
                             else "train")
        x0, y0 = 400000.0 + 2000.0 * i, 5400000.0
        size = grid * patch
        counts = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
        for r in range(grid):
            for c in range(grid):
                t = int(rng.integers(n_types))
                z = rng.normal(size=dim) * 0.8
                e = type_centres[t] + region_centres[regions.index(region)] + z
                e = e + region_shift * shift_dir * 3.0
                embs.append(e)
                smooth = 0.15 * np.tanh(z[:3].sum() / 2.0)
                ious.append(float(np.clip(type_iou[t] + smooth + rng.normal(0, 0.03), 0, 1)))
                cols["image"].append(name)
                cols["region"].append(region)
                cols["split"].append(im_split)
                cols["row_off"].append(r * patch)
                cols["col_off"].append(c * patch)
                cols["height"].append(patch)
                cols["width"].append(patch)
                footprints.append(box(x0 + c * patch * 0.3, y0 - (r + 1) * patch * 0.3,
                                      x0 + (c + 1) * patch * 0.3, y0 - r * patch * 0.3))
                tp = int(ious[-1] * 400)
                counts["tp"] += tp
                counts["fp"] += (400 - tp) // 2
                counts["fn"] += (400 - tp) - (400 - tp) // 2
                counts["tn"] += patch * patch - 400 - (400 - tp)
        images.append(ImageRecord(
            name=name, path=f"/data/images/{name}.tif", label=f"/data/gt/{name}.tif",
            region=region, split=im_split, crs_wkt=crs,
            transform=(0.3, 0.0, x0, 0.0, -0.3, y0), width=size, height=size, counts=counts))
    n = len(ious)
    iou = np.asarray(ious, np.float64)
    noise = rng.normal(0, 0.08, size=(4, n))
    label_frac = np.clip(0.1 + 0.3 * rng.random(n), 0, 1)
    pred_frac = np.clip(label_frac * (0.5 + 0.5 * iou) + noise[0] * 0.05, 0, 1)
    columns: dict[str, np.ndarray] = {
        "patch_id": np.arange(n, dtype=np.int64),
        "image": np.asarray(cols["image"], dtype=object),
        "region": np.asarray(cols["region"], dtype=object),
        "split": np.asarray(cols["split"], dtype=object),
        **{k: np.asarray(cols[k], np.int64) for k in ("row_off", "col_off", "height", "width")},
        "iou": iou,
        "accuracy": np.clip(0.8 + 0.2 * iou + noise[1] * 0.1, 0, 1),
        "precision": np.clip(iou + 0.1, 0, 1),
        "recall": np.clip(iou + 0.05, 0, 1),
        "label_frac": label_frac,
        "pred_frac": pred_frac,
    }
    columns.update(synthetic_confusion(iou, label_frac, pred_frac, patch * patch, rng))
    if with_uncertainty:
        columns["entropy"] = np.clip(0.6 - 0.5 * iou + noise[2], 0, 1)
        columns["confidence"] = np.clip(0.5 + 0.45 * iou + noise[3], 0, 1)
        columns["uncertain_frac"] = np.clip(0.3 - 0.25 * iou + noise[1] * 0.5, 0, 1)
    else:
        for k in ("entropy", "confidence", "uncertain_frac", "soft_fp_frac", "soft_fn_frac",
                  "conf_fp_frac", "conf_fn_frac"):
            columns[k] = np.full(n, np.nan)
        columns["logit_hist"] = np.zeros((n, HIST_BINS), np.int32)
    for im in images:   # image counts: the sums of their patches' counts
        rows = columns["image"] == im.name
        im.counts = {k: int(columns[k][rows].sum()) for k in ("tp", "fp", "fn", "tn")}
    thumbs = {
        "image": rng.integers(0, 255, size=(n, thumb, thumb, 3), dtype=np.uint8),
        "label": (rng.random((n, thumb, thumb)) < 0.2).astype(np.uint8),
        "pred": (rng.random((n, thumb, thumb)) < 0.2).astype(np.uint8),
    }
    return PatchTable(columns=columns, embeddings=np.asarray(embs, np.float32),
                      footprints=footprints, crs_wkt=crs, images=images,
                      iou_convention="zero", thumbnails=thumbs)


def synthetic_confusion(iou: np.ndarray, label_frac: np.ndarray, pred_frac: np.ndarray, pixels: int,
               rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Counts, expected / confident errors and logit histograms matching IoU and fractions."""
    n = iou.size
    lab = np.round(label_frac * pixels)
    pred = np.round(pred_frac * pixels)
    tp = np.minimum(np.round(iou * (pred + lab) / (1.0 + iou)), np.minimum(pred, lab))
    fp, fn = pred - tp, lab - tp
    tn = pixels - tp - fp - fn
    hist = np.zeros((n, HIST_BINS), np.int64)

    def put(counts: np.ndarray, logit: float) -> None:
        spread = rng.normal(logit, 0.7, size=n)
        b = np.clip(((spread + HIST_LIMIT) / HIST_WIDTH).astype(int), 0, HIST_BINS - 1)
        b = np.clip(b, HIST_BINS // 2 if logit >= 0 else 0,
                    HIST_BINS - 1 if logit >= 0 else HIST_BINS // 2 - 1)
        np.add.at(hist, (np.arange(n), b), counts.astype(np.int64))

    put(tp, 5.0)
    put(fp, 1.2)
    put(fn, -1.2)
    put(tn, -7.0)
    jitter = rng.lognormal(0.0, 0.2, size=(2, n))
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "pred_frac": pred / pixels,
            "label_frac": lab / pixels,
            "soft_fp_frac": fp / pixels * jitter[0], "soft_fn_frac": fn / pixels * jitter[1],
            "conf_fp_frac": 0.3 * fp / pixels, "conf_fn_frac": 0.3 * fn / pixels,
            "logit_hist": hist.astype(np.int32)}


def synthetic_embeddings(n: int, dim: int, *, n_types: int = 14,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings (n, dim) float32, IoU (n,), image id (n,)) for large-N benchmarks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_types, dim)).astype(np.float32) * 2.0
    types = rng.integers(n_types, size=n)
    x = centres[types] + rng.normal(size=(n, dim)).astype(np.float32)
    iou = np.clip(np.linspace(0.1, 0.9, n_types)[types] + 0.1 * np.tanh(x[:, 0] - centres[
        types, 0]) + rng.normal(0, 0.05, n), 0, 1)
    image = np.arange(n) // 100
    return x.astype(np.float32), iou, image
