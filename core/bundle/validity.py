"""Bundle entries for how far a region's figures can be trusted.

Analysis bundles get what the region methods need beyond the IoU estimators (ATC's
threshold, the interval's error scale), their leave-one-region-out comparison
(`baselines`) and the label-disagreement scores; estimate bundles get the new region's
headline estimate (`region_estimate`). Both get the per-patch fields `covered` and
`label_error`. Formats: docs/bundle-format.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..analytics.region import COVERAGE_PERCENTILE, METHODS, Z90, covered
from ..engine.metrics import OBJECT_CONFIDENCE, OBJECT_MIN_PX, OBJECT_OVERLAP_MAX
from .similarity import latent_space_id

if TYPE_CHECKING:
    from ..analytics.fit import Analysis
    from ..analytics.latent import LatentPCA

#: how the label-disagreement score is made (manifest `label_errors`)
LABEL_ERRORS = {
    "field": "label_error",
    "score": "conf_fp_frac + conf_fn_frac",
    "conf_fp_frac": "share of valid pixels in predicted buildings that the label barely "
                    "touches (a building the labels may lack)",
    "conf_fn_frac": "share of valid pixels in labelled buildings that the prediction "
                    "barely touches (a label the imagery may not support)",
    "objects": {"connectivity": 8, "min_px": OBJECT_MIN_PX,
                "overlap_max": OBJECT_OVERLAP_MAX, "mean_confidence_min": OBJECT_CONFIDENCE},
}


def patch_fields(novelty_pct: np.ndarray | None, label_error: np.ndarray | None,
                 n: int) -> dict[str, np.ndarray]:
    """The `covered` (1 / 0, -1 without novelty) and `label_error` patch columns."""
    cov = (covered(novelty_pct).astype(np.int64) if novelty_pct is not None
           else np.full(n, -1, np.int64))
    err = label_error if label_error is not None else np.full(n, np.nan, np.float32)
    return {"covered": cov, "label_error": err}


def coverage_entry() -> dict[str, Any]:
    """The manifest's `coverage`: which patches get a per-patch number."""
    return {"field": "covered", "novelty_max": COVERAGE_PERCENTILE,
            "meaning": "1: novelty <= novelty_max, inside the reference's coverage; 0: "
                       "out of coverage, no per-patch estimate is claimed (show 'unknown'); "
                       "-1: no novelty"}


def latent_space_entry(pca: LatentPCA, dims: int) -> dict[str, Any]:
    """The manifest's `latent_space`: the PCA basis's fingerprint and similarity space."""
    return {"id": latent_space_id(pca.mean_, pca.components_),
            "dims": int(min(dims, pca.components_.shape[0])),
            "similarity": "pc1..pcK / sqrt(explained variance ratio), Euclidean "
                          "(core/bundle/similarity.py)"}


def region_entries(res: Analysis) -> dict[str, Any]:
    """Manifest entries of an analysis: coverage, label errors, latent space, region."""
    dims = res.novelty.reference_.shape[1] if res.novelty is not None else 50
    out: dict[str, Any] = {"coverage": coverage_entry(), "label_errors": LABEL_ERRORS,
                           "latent_space": latent_space_entry(res.pca, dims)}
    loo = res.baselines
    if res.atc_threshold is None and loo is None:
        return out
    out["region"] = {
        "figure": "overall IoU = sum(IoU_i * union_i) / sum(union_i); without labels "
                  "union_i = (pred_frac + soft_fn_frac) * valid pixels",
        "methods": list(METHODS), "headline": "gated", "estimator": "full",
        "coverage_percentile": COVERAGE_PERCENTILE, "atc_threshold": res.atc_threshold,
        "interval": {"level": 0.9, "z": Z90,
                     "method_rmse": loo.gated_rmse if loo is not None else None,
                     "residual_sd": loo.residual_sd if loo is not None else None,
                     "from": "leave-one-out RMSE of the gated method on the reference "
                             "and the per-patch noise of the weighted mean"},
    }
    if loo is not None:
        out["baselines"] = loo.to_dict()
    return out
