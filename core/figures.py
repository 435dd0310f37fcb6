"""Summary figures and their text, shared by training, analytics, the commands and the plugin.

numpy and the standard library only: the QGIS plugin imports this module.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import numpy as np


def overall_iou(tp: int | np.ndarray, fp: int | np.ndarray, fn: int | np.ndarray) -> float:
    """Total intersection over total union (the data-set figure, no 0/0 convention needed).

    NaN when the union is empty (nothing labelled, nothing predicted).
    """
    tp_s, fp_s, fn_s = (float(np.sum(x)) for x in (tp, fp, fn))
    union = tp_s + fp_s + fn_s
    return tp_s / union if union > 0 else float("nan")


def nanmean_or_none(values: np.ndarray | Iterable[float]) -> float | None:
    """Mean over the finite values; None when there are none."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(v)) if np.isfinite(v).any() else None


def nanmedian_or_none(values: np.ndarray | Iterable[float]) -> float | None:
    """Median over the finite values; None when there are none."""
    v = np.asarray(values, dtype=np.float64)
    return float(np.nanmedian(v)) if np.isfinite(v).any() else None


def format_number(value: object, *, percent: bool = False, missing: str = "n/a") -> str:
    """A figure for people: 3 decimals, or a percentage with 2 (0.7234 -> "72.34").

    `missing` stands for None, NaN, infinity and anything that is not a number (a bool is
    not a number here).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return missing
    v = float(value)
    if not math.isfinite(v):
        return missing
    return f"{100 * v:.2f}" if percent else f"{v:.3f}"
