"""Per-patch scores: confusion counts, IoU under an explicit convention, uncertainty.

Every function is pure and vectorised over a batch: masks are arrays of shape (B, H, W)
(a single patch is a batch of one). Only valid pixels count; a patch without valid
pixels scores NaN everywhere.

IoU conventions for a patch where label and prediction are both empty (IoU = 0/0):

- ``"zero"``: 0, as in the source paper (an empty, correctly empty patch "fails");
- ``"one"``: 1 (an empty, correctly empty patch is perfect);
- ``"exclude"``: NaN, the patch is left out of IoU statistics.

Precision is NaN where nothing is predicted, recall NaN where the label is empty, and
the mean confidence NaN where nothing is predicted: these are undefined, not zero.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError
from .records import IOU_CONVENTIONS

#: Probability at or above which a pixel is predicted as building.
THRESHOLD = 0.5
#: Probabilities strictly between these bounds count as uncertain.
UNCERTAIN_LOW, UNCERTAIN_HIGH = 0.25, 0.75

_EPS = 1e-7


def check_convention(convention: str) -> str:
    """Return `convention` if it is one of IOU_CONVENTIONS, else raise ConfigurationError."""
    if convention not in IOU_CONVENTIONS:
        raise ConfigurationError(
            f"IoU convention {convention!r} is unknown: expected one of "
            f"{', '.join(IOU_CONVENTIONS)}; pass e.g. --iou-convention zero")
    return convention


def _batch(a: np.ndarray) -> np.ndarray:
    return a[None] if a.ndim == 2 else a


def confusion_counts(pred: np.ndarray, label: np.ndarray,
                     valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Count tp, fp, fn, tn per patch (int64 arrays of length B) over valid pixels."""
    p = _batch(np.asarray(pred)).astype(bool, copy=False)
    t = _batch(np.asarray(label)).astype(bool, copy=False)
    v = np.ones_like(p) if valid is None else _batch(np.asarray(valid)).astype(bool, copy=False)
    axes = (1, 2)
    pv = p & v
    tp = np.count_nonzero(pv & t, axis=axes).astype(np.int64)
    n_pred = np.count_nonzero(pv, axis=axes).astype(np.int64)
    n_true = np.count_nonzero(t & v, axis=axes).astype(np.int64)
    n_valid = np.count_nonzero(v, axis=axes).astype(np.int64)
    fp = n_pred - tp
    fn = n_true - tp
    tn = n_valid - tp - fp - fn
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def iou_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray,
                    convention: str = "zero") -> np.ndarray:
    """IoU = tp / (tp + fp + fn), with `convention` deciding the 0/0 case."""
    check_convention(convention)
    tp = np.asarray(tp, dtype=np.float64)
    union = tp + np.asarray(fp, dtype=np.float64) + np.asarray(fn, dtype=np.float64)
    empty_value = {"zero": 0.0, "one": 1.0, "exclude": np.nan}[convention]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), empty_value)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def uncertainty(prob: np.ndarray, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Uncertainty features per patch, over valid pixels (float64 arrays of length B).

    Mean binary entropy (bits, 0..1), mean confidence inside predicted buildings, share
    of uncertain pixels (0.25 < p < 0.75).

    The confidence of a predicted pixel is its probability p (>= THRESHOLD), so the mean
    lies in [0.5, 1]; NaN where nothing is predicted.
    """
    p = _batch(np.asarray(prob, dtype=np.float32))
    v = np.ones(p.shape, dtype=bool) if valid is None else _batch(np.asarray(valid, dtype=bool))
    axes = (1, 2)
    n_valid = np.count_nonzero(v, axis=axes)
    q = np.clip(p, _EPS, 1.0 - _EPS)
    ent = -(q * np.log2(q) + (1.0 - q) * np.log2(1.0 - q))
    ent_sum = np.where(v, ent, 0.0).sum(axis=axes, dtype=np.float64)
    pred = (p >= THRESHOLD) & v
    conf_sum = np.where(pred, p, 0.0).sum(axis=axes, dtype=np.float64)
    unc = np.count_nonzero((p > UNCERTAIN_LOW) & (p < UNCERTAIN_HIGH) & v, axis=axes)
    return {
        "entropy": _ratio(ent_sum, n_valid),
        "confidence": _ratio(conf_sum, np.count_nonzero(pred, axis=axes)),
        "uncertain_frac": _ratio(unc, n_valid),
    }


def patch_metrics(prob: np.ndarray, label: np.ndarray | None, valid: np.ndarray,
                  convention: str = "zero", with_uncertainty: bool = True,
                  ) -> dict[str, np.ndarray]:
    """All per-patch scores of a batch as float64 arrays (plus int64 tp/fp/fn/tn).

    `prob` (B, H, W) building probabilities, `label` (B, H, W) 0/1 or None when the
    imagery has no ground truth (label columns become NaN), `valid` (B, H, W) bool.
    Keys: iou, accuracy, precision, recall, label_frac, pred_frac, entropy, confidence,
    uncertain_frac, and, with labels, tp, fp, fn, tn.
    """
    check_convention(convention)
    p = _batch(np.asarray(prob, dtype=np.float32))
    v = _batch(np.asarray(valid, dtype=bool))
    b = p.shape[0]
    pred = p >= THRESHOLD
    n_valid = np.count_nonzero(v, axis=(1, 2))
    n_pred = np.count_nonzero(pred & v, axis=(1, 2))
    out: dict[str, np.ndarray] = {"pred_frac": _ratio(n_pred, n_valid)}
    nan = np.full(b, np.nan)
    if label is None:
        for k in ("iou", "accuracy", "precision", "recall", "label_frac"):
            out[k] = nan.copy()
    else:
        c = confusion_counts(pred, label, v)
        iou = iou_from_counts(c["tp"], c["fp"], c["fn"], convention)
        out["iou"] = np.where(n_valid > 0, iou, np.nan)
        out["accuracy"] = _ratio(c["tp"] + c["tn"], n_valid)
        out["precision"] = _ratio(c["tp"], c["tp"] + c["fp"])
        out["recall"] = _ratio(c["tp"], c["tp"] + c["fn"])
        out["label_frac"] = _ratio(c["tp"] + c["fn"], n_valid)
        out.update(c)
    if with_uncertainty:
        out.update(uncertainty(p, v))
    else:
        for k in ("entropy", "confidence", "uncertain_frac"):
            out[k] = nan.copy()
    return out
