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

Besides the scores, the engine keeps per patch what later estimates of the confusion
need without the pixels: the expected false-positive / false-negative shares if the
probabilities were calibrated (`soft_fp_frac`, `soft_fn_frac`), a histogram of the
logits (`logit_hist`, HIST_BINS bins of HIST_WIDTH from -HIST_LIMIT to +HIST_LIMIT, the
end bins open), and, with labels, the share of pixels in whole objects where a confident
prediction contradicts the label (`conf_fp_frac`: a predicted building the label lacks;
`conf_fn_frac`: a labelled building the model confidently does not see).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError
from .records import IOU_CONVENTIONS

#: Probability at or above which a pixel is predicted as building.
THRESHOLD = 0.5
#: Probabilities strictly between these bounds count as uncertain.
UNCERTAIN_LOW, UNCERTAIN_HIGH = 0.25, 0.75

#: Logit histogram: HIST_BINS bins of HIST_WIDTH logit units from -HIST_LIMIT (bin 0
#: takes everything below, the last bin everything above); bins HIST_BINS // 2 and up
#: hold the predicted building pixels (p >= THRESHOLD, logit >= 0).
HIST_LIMIT, HIST_BINS = 8.0, 32
HIST_WIDTH = 2 * HIST_LIMIT / HIST_BINS
#: Possible label errors are whole objects (8-connected, at least OBJECT_MIN_PX pixels)
#: of the prediction or the label that the other touches on at most OBJECT_OVERLAP_MAX of
#: their area, where the model's mean confidence is at least OBJECT_CONFIDENCE.
OBJECT_MIN_PX, OBJECT_OVERLAP_MAX, OBJECT_CONFIDENCE = 50, 0.2, 0.8

_EPS = 1e-7
#: inner bin edges of the logit histogram as probabilities (float32 comparisons)
_HIST_EDGES_P = (1.0 / (1.0 + np.exp(-np.linspace(-HIST_LIMIT, HIST_LIMIT, HIST_BINS + 1)
                                      [1:-1]))).astype(np.float32)
_HIST_EDGES_P[HIST_BINS // 2 - 1] = THRESHOLD  # logit 0 is exactly the decision threshold


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


def logit_histogram(prob: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(B, HIST_BINS) int32 counts of valid pixels per logit bin (see HIST_LIMIT)."""
    p = _batch(np.asarray(prob, dtype=np.float32))
    v = np.ones(p.shape, dtype=bool) if valid is None else _batch(np.asarray(valid, dtype=bool))
    b = p.shape[0]
    idx = np.searchsorted(_HIST_EDGES_P, p, side="right").astype(np.int64)
    idx += (np.arange(b, dtype=np.int64) * HIST_BINS)[:, None, None]
    return np.bincount(idx[v], minlength=b * HIST_BINS).reshape(b, HIST_BINS).astype(np.int32)


def soft_errors(prob: np.ndarray, valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Expected false-positive and false-negative shares of valid pixels, per patch.

    If the probabilities were calibrated, a predicted pixel (p >= THRESHOLD) would be
    wrong with probability 1 - p and a background pixel with probability p.
    """
    p = _batch(np.asarray(prob, dtype=np.float32))
    v = np.ones(p.shape, dtype=bool) if valid is None else _batch(np.asarray(valid, dtype=bool))
    n_valid = np.count_nonzero(v, axis=(1, 2))
    pred = p >= THRESHOLD
    fp = np.where(pred & v, 1.0 - p, 0.0).sum(axis=(1, 2), dtype=np.float64)
    fn = np.where(~pred & v, p, 0.0).sum(axis=(1, 2), dtype=np.float64)
    return {"soft_fp_frac": _ratio(fp, n_valid), "soft_fn_frac": _ratio(fn, n_valid)}


def _whole_objects(mask: np.ndarray, other: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """Pixels per patch (B,) of `mask`'s objects that `other` barely touches, confidently.

    Objects are 8-connected components within each patch of at least OBJECT_MIN_PX
    pixels; one counts when at most OBJECT_OVERLAP_MAX of it lies in `other` and the
    mean of `conf` over it is at least OBJECT_CONFIDENCE.
    """
    from scipy import ndimage

    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True                      # connected within a patch, never across
    lab, n = ndimage.label(mask, structure=structure)
    out = np.zeros(mask.shape[0], np.float64)
    if n == 0:
        return out
    area = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(np.float64)
    inside = np.bincount(lab.ravel(), weights=other.ravel().astype(np.float64),
                         minlength=n + 1)[1:]
    mean_conf = np.bincount(lab.ravel(), weights=conf.ravel().astype(np.float64),
                            minlength=n + 1)[1:] / np.maximum(area, 1.0)
    keep = ((area >= OBJECT_MIN_PX) & (inside <= OBJECT_OVERLAP_MAX * area)
            & (mean_conf >= OBJECT_CONFIDENCE))
    if keep.any():
        first = np.unique(lab.ravel(), return_index=True)[1][1:]   # objects 1..n, in order
        patch = first // (mask.shape[1] * mask.shape[2])            # the patch of each one
        np.add.at(out, patch[keep], area[keep])
    return out


def confident_disagreement(prob: np.ndarray, label: np.ndarray,
                           valid: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Shares of valid pixels in whole objects where the model confidently contradicts the label.

    `conf_fp_frac`: predicted buildings (p >= THRESHOLD) that the label barely touches,
    predicted with a mean p of at least OBJECT_CONFIDENCE (a building the labels may
    lack); `conf_fn_frac`: labelled buildings that the prediction barely touches, with a
    mean 1 - p of at least OBJECT_CONFIDENCE (a label the imagery may not support). Only
    whole objects count: an outline a pixel off or a partly missed roof is the model's
    error, not the label's.
    """
    p = _batch(np.asarray(prob, dtype=np.float32))
    t = _batch(np.asarray(label)).astype(bool, copy=False)
    v = np.ones(p.shape, dtype=bool) if valid is None else _batch(np.asarray(valid, dtype=bool))
    n_valid = np.count_nonzero(v, axis=(1, 2))
    pred = (p >= THRESHOLD) & v
    extra = _whole_objects(pred, t & v, p)
    missing = _whole_objects(t & v, pred, 1.0 - p)
    return {"conf_fp_frac": _ratio(extra, n_valid), "conf_fn_frac": _ratio(missing, n_valid)}


def patch_metrics(prob: np.ndarray, label: np.ndarray | None, valid: np.ndarray,
                  convention: str = "zero", with_uncertainty: bool = True,
                  ) -> dict[str, np.ndarray]:
    """All per-patch scores of a batch as float64 arrays (plus int64 tp/fp/fn/tn).

    `prob` (B, H, W) building probabilities, `label` (B, H, W) 0/1 or None when the
    imagery has no ground truth (label columns become NaN), `valid` (B, H, W) bool.
    Keys: iou, accuracy, precision, recall, label_frac, pred_frac, entropy, confidence,
    uncertain_frac, soft_fp_frac, soft_fn_frac, conf_fp_frac, conf_fn_frac, tp, fp, fn, tn
    (float64; the label-dependent ones NaN without labels) and logit_hist (B, HIST_BINS)
    int32 (zeros without uncertainty).
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
        for k in ("iou", "accuracy", "precision", "recall", "label_frac", "conf_fp_frac",
                  "conf_fn_frac", "tp", "fp", "fn", "tn"):
            out[k] = nan.copy()
    else:
        c = confusion_counts(pred, label, v)
        iou = iou_from_counts(c["tp"], c["fp"], c["fn"], convention)
        out["iou"] = np.where(n_valid > 0, iou, np.nan)
        out["accuracy"] = _ratio(c["tp"] + c["tn"], n_valid)
        out["precision"] = _ratio(c["tp"], c["tp"] + c["fp"])
        out["recall"] = _ratio(c["tp"], c["tp"] + c["fn"])
        out["label_frac"] = _ratio(c["tp"] + c["fn"], n_valid)
        out.update({k: np.where(n_valid > 0, c[k], np.nan) for k in c})
        if with_uncertainty:
            out.update(confident_disagreement(p, label, v))
        else:
            out.update({k: nan.copy() for k in ("conf_fp_frac", "conf_fn_frac")})
    if with_uncertainty:
        out.update(uncertainty(p, v))
        out.update(soft_errors(p, v))
        out["logit_hist"] = logit_histogram(p, v)
    else:
        for k in ("entropy", "confidence", "uncertain_frac", "soft_fp_frac", "soft_fn_frac"):
            out[k] = nan.copy()
        out["logit_hist"] = np.zeros((b, HIST_BINS), np.int32)
    return out
