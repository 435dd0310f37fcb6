"""Suspected ground-truth errors: patches where a confident prediction contradicts the label.

The engine counts, per patch, the pixels where the model is confident (p >= 0.9) of a
building the label lacks (`conf_fp_frac`) and confident (p <= 0.1) of no building where
the label has one (`conf_fn_frac`), after an opening that ignores outline seams
(`engine.metrics.confident_disagreement`). Both directions are label errors a mapper
can fix: a building missing from the labels, or a label with no building under it.

`label_error_score` is the share of the patch's pixels in either set (0..1; NaN where
the patch has no labels or no prediction). The model's own mistakes score too (a car
park it confidently calls buildings): the score ranks patches for a person to review,
it does not prove the label wrong.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def label_error_score(columns: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Label-disagreement score (N,) float32, or None without the engine's columns."""
    if "conf_fp_frac" not in columns or "conf_fn_frac" not in columns:
        return None
    fp = np.asarray(columns["conf_fp_frac"], np.float64)
    fn = np.asarray(columns["conf_fn_frac"], np.float64)
    return (fp + fn).astype(np.float32)
