"""Which per-patch numbers the explorer may claim: "unknown" beyond the reference's coverage.

A patch whose novelty lies above the reference's 95th percentile (bundle column
`covered` = 0) gets no per-patch estimate: the estimated IoU there is shown as unknown
(a hollow grey marker, a hollow grey footprint, "unknown" in the hover text) and left out
of the mean estimated IoU of a selection. Real IoUs (labelled bundles) are measured, not
estimated, and are always shown. The label-disagreement score (`label_error`) marks the
patches a mapper should review first. No Qt: numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: the per-patch estimate columns that are not claimed out of coverage
ESTIMATE_COLUMNS = ("est_iou", "est_iou_2d")
#: how an unclaimed estimate reads
UNKNOWN_TEXT = "unknown (beyond the reference's coverage)"
#: label-disagreement score from which the hover text suggests a label review (the
#: default `--min-label-error` of `segexplain export-tasks --kind label-review`)
REVIEW_MIN = 0.005
#: label-disagreement scores at or above this share of a patch's pixels get the end colour
LABEL_ERROR_MAX = 0.1


def unknown_mask(columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Patches out of the reference's coverage (`covered` == 0); none without the column."""
    cov = columns.get("covered")
    if cov is None:
        return np.zeros(n, dtype=bool)
    return np.asarray(cov, dtype=float) == 0


def claimed(values: np.ndarray | None, column: str, unknown: np.ndarray) -> np.ndarray | None:
    """`values` of `column` with NaN where no per-patch figure is claimed (estimates only)."""
    if values is None or column not in ESTIMATE_COLUMNS or not unknown.any():
        return values
    out = np.array(values, dtype=float)
    out[unknown] = np.nan
    return out


def review_hint(conf_fp: float | None, conf_fn: float | None, score: float) -> str | None:
    """The hover text's label-review hint for a patch's disagreement, or None below REVIEW_MIN."""
    if not np.isfinite(score) or score < REVIEW_MIN:
        return None
    fp = conf_fp if conf_fp is not None and np.isfinite(conf_fp) else 0.0
    fn = conf_fn if conf_fn is not None and np.isfinite(conf_fn) else 0.0
    what = ("missing building? (confident prediction where the label has none)" if fp >= fn
            else "label without building? (label where the model confidently sees none)")
    return f"label review: {what}"
