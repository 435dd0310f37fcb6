"""Segmentation figures per run, region and split.

Two IoU figures, because they answer different questions:

- overall IoU: total intersection over total union, summed over the stitched images
  (TP / (TP + FP + FN) from each ImageRecord's counts), as benchmarks such as Inria
  report it (the source paper's U-Net: 72.55); accuracy likewise (TP + TN) / pixels;
- mean patch IoU: the mean over patches of the per-patch IoU, under the run's
  convention for empty patches (the figure the latent-space estimators learn).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..engine.records import ImageRecord, PatchTable
from ..figures import nanmean_or_none, nanmedian_or_none, overall_iou


def pixel_figures(counts: Iterable[Mapping[str, int]]) -> dict[str, Any]:
    """Overall IoU, accuracy, precision, recall and pixel counts from tp/fp/fn/tn sums."""
    tp = fp = fn = tn = 0
    for c in counts:
        tp += int(c.get("tp", 0))
        fp += int(c.get("fp", 0))
        fn += int(c.get("fn", 0))
        tn += int(c.get("tn", 0))
    total = tp + fp + fn + tn
    union = tp + fp + fn
    return {
        "overall_iou": overall_iou(tp, fp, fn) if union else None,
        "accuracy": (tp + tn) / total if total else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "pixels": total, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def group_figures(table: PatchTable, rows: np.ndarray,
                  images: list[ImageRecord]) -> dict[str, Any]:
    """Figures for the patches at `rows` and the images that hold them."""
    cols = table.columns
    iou = np.asarray(cols["iou"], np.float64)[rows]
    labelled = [im for im in images if im.counts]
    out = pixel_figures(im.counts for im in labelled)
    out.update({
        "mean_patch_iou": nanmean_or_none(iou),
        "median_patch_iou": nanmedian_or_none(iou),
        "mean_patch_accuracy": nanmean_or_none(np.asarray(cols["accuracy"], np.float64)[rows]),
        "patches": int(rows.size),
        "patches_with_iou": int(np.isfinite(iou).sum()),
        "images": len(images),
        "labelled_images": len(labelled),
        "label_frac": nanmean_or_none(np.asarray(cols["label_frac"], np.float64)[rows]),
        "pred_frac": nanmean_or_none(np.asarray(cols["pred_frac"], np.float64)[rows]),
    })
    return out


def run_statistics(table: PatchTable) -> dict[str, Any]:
    """{"overall": ..., "by_region": {region: ...}, "by_split": {split: ...}}."""
    region = np.asarray(table.columns["region"]).astype(str)
    split = np.asarray(table.columns["split"]).astype(str)
    image = np.asarray(table.columns["image"]).astype(str)
    out: dict[str, Any] = {
        "iou_convention": table.iou_convention,
        "overall": group_figures(table, np.arange(len(table)), table.images),
    }
    for key, col in (("by_region", region), ("by_split", split)):
        groups: dict[str, Any] = {}
        for value in sorted(set(col.tolist())):
            rows = np.flatnonzero(col == value)
            names = set(image[rows].tolist())
            ims = [im for im in table.images if im.name in names]
            groups[value] = group_figures(table, rows, ims)
        out[key] = groups
    return out
