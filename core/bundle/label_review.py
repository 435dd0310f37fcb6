"""Label-review tasks: the patches whose labels a mapper should check first.

Each patch of a labelled bundle has a label-disagreement score (`label_error`: share of
its pixels where a confident prediction contradicts the label, see
`analytics.label_errors`). The review layer keeps the patches at or above `min_score`
(and at most `top` of them), ranked by score, with what to look for:

- ``missing building?``: the model is confident of buildings the label lacks
  (`conf_fp_frac` is the larger part);
- ``label without building?``: the label has buildings where the model confidently
  sees none (`conf_fn_frac`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigurationError
from .reader import Bundle
from .tasks import patch_footprints, write_task_layer

REVIEW_FIELDS = {"patch_id": "int64", "image": "text", "region": "text", "rank": "int",
                 "label_error": "real", "conf_fp_frac": "real", "conf_fn_frac": "real",
                 "review": "text", "iou": "real", "novelty": "real"}


def review_reason(conf_fp: np.ndarray, conf_fn: np.ndarray) -> np.ndarray:
    """What to look for in each patch (text per patch)."""
    fp = np.nan_to_num(np.asarray(conf_fp, np.float64))
    fn = np.nan_to_num(np.asarray(conf_fn, np.float64))
    return np.where(fp >= fn, "missing building?", "label without building?").astype(object)


def export_label_review(bundle: str | Path, out: str | Path, fmt: str = "gpkg", *,
                        min_score: float = 0.005, top: int | None = None) -> dict[str, Any]:
    """Write the label-review layer of `bundle` to `out`; returns what it wrote."""
    b = Bundle(bundle)
    cols = b.patches
    if "label_error" not in cols or not np.isfinite(
            np.asarray(cols["label_error"], np.float64)).any():
        raise ConfigurationError(
            f"{b.path}: no label-disagreement scores (a bundle without labels, or written "
            "by an older segexplain); analyse labelled imagery with this version")
    score = np.asarray(cols["label_error"], np.float64)
    keep = np.flatnonzero(np.isfinite(score) & (score >= min_score))
    keep = keep[np.argsort(-score[keep], kind="stable")]
    if top is not None:
        keep = keep[:max(0, int(top))]
    rows: dict[str, np.ndarray] = {k: np.asarray(cols[k])[keep] for k in REVIEW_FIELDS
                                   if k in cols}
    rows["rank"] = np.arange(1, keep.size + 1)
    rows["review"] = review_reason(rows["conf_fp_frac"], rows["conf_fn_frac"])
    geoms = patch_footprints(b)
    write_task_layer(out, fmt, "label_review", REVIEW_FIELDS, rows, [geoms[i] for i in keep],
                     b.manifest.get("crs_wkt"))
    reasons = {r: int((rows["review"] == r).sum())
               for r in ("missing building?", "label without building?")}
    return {"out": str(out), "format": fmt, "kind": "label-review",
            "patches": int(keep.size), "of": int(np.isfinite(score).sum()),
            "min_score": min_score, "review": reasons}
