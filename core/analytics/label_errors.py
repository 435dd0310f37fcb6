"""Suspected ground-truth errors: patches where a confident prediction contradicts the label.

The engine measures, per patch, the pixels in whole objects where the model and the
label disagree outright (`engine.metrics.confident_disagreement`): predicted buildings
that the label barely touches, predicted with confidence (`conf_fp_frac`: a building
the labels may lack), and labelled buildings that the prediction barely touches, where
the model is confident there is none (`conf_fn_frac`: a label with no building under
it). Outlines a pixel off and partly missed roofs do not count: they are the model's
errors, not the label's.

`label_error_score` is the share of the patch's pixels in either kind of object (0..1;
NaN where the patch has no labels or no prediction). The model's own confident mistakes
score too (rocks it takes for roofs): the score ranks patches for a person to review,
it does not prove the label wrong. On the sample data with known corruptions the score
finds the corrupted patches with the AUROC that bench/validity.py reports.
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
