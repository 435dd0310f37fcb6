"""Apply a reference analysis to a new region: its patches placed in the reference's space.

`estimate_table` uses the reference bundle's stored arrays only (PCA, estimator weights,
novelty reference); `bundle.manifest.write_estimate` writes its result. The reference is
anything that reads like a `bundle.reader.Bundle` (`Reference`): analytics sit below the
bundle layer and do not import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..engine.records import PatchTable
from ..errors import BundleError, ConfigurationError
from .clustering import cluster_table
from .confidence import has_confidence, with_derived
from .estimators import MLPIoUEstimator, build_features, regression_scores
from .fit import has_uncertainty
from .knn import exact_knn
from .label_errors import label_error_score
from .latent import LatentPCA, whiten
from .novelty import KNNNovelty, auroc
from .region import Estimator, RegionModel, region_report
from .stats import run_statistics


class Reference(Protocol):
    """What `estimate_table` reads of a reference analysis (a `bundle.reader.Bundle`)."""

    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        """"analysis" or "estimate"."""

    @property
    def patches(self) -> dict[str, np.ndarray]:
        """Per-patch attributes of the reference."""

    def array(self, name: str) -> np.ndarray:
        """One stored array."""

    def has_array(self, name: str) -> bool:
        """Whether the array is stored."""


@dataclass
class Estimate:
    """A new region placed in a reference bundle's space."""

    table: PatchTable
    latent: np.ndarray
    pca: LatentPCA
    est_iou: np.ndarray
    est_iou_2d: np.ndarray
    estimator: str
    cluster: np.ndarray
    novelty_distance: np.ndarray
    novelty_pct: np.ndarray
    scores: dict[str, Any] = field(default_factory=dict)
    novelty_auroc: float | None = None
    clusters: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    region: dict[str, Any] | None = None          # region-level estimate (region.py)
    label_error: np.ndarray | None = None         # (N,) label-disagreement score


def reference_estimators(ref: Reference) -> dict[str, Estimator]:
    """Rebuild the reference bundle's estimators from its arrays (numpy only)."""
    out = {}
    for name, spec in ref.manifest.get("estimators", {}).items():
        arrays = {a: ref.array(a) for a in spec["arrays"]}
        out[name] = (MLPIoUEstimator.from_arrays(arrays, name), list(spec["features"]))
    return out


def estimate_table(table: PatchTable, ref: Reference) -> Estimate:
    """Estimated IoU, novelty and cluster of each patch of `table` in `ref`'s space."""
    if ref.kind != "analysis":
        raise BundleError(f"{ref.path}: a {ref.kind} bundle; --reference must be an analysis "
                          "bundle written by `segexplain analyze`")
    pca = LatentPCA.from_arrays(ref.array("pca_mean"), ref.array("pca_components"),
                                ref.array("pca_explained_variance_ratio"),
                                normalize=ref.manifest.get("pca", {}).get("normalize", "none"))
    if table.embeddings.shape[1] != pca.n_features_in_:
        raise ConfigurationError(
            f"embeddings of {table.embeddings.shape[1]} dimensions, the reference "
            f"{ref.path.name} has {pca.n_features_in_}: use the reference's model "
            f"({ref.manifest.get('model', {}).get('path', 'see segexplain info')})")
    latent = pca.transform(table.embeddings)
    n = len(table)
    cols = with_derived(table.columns)   # + the confidence features (confidence.py)
    ests = reference_estimators(ref)
    chosen = "full" if "full" in ests and has_uncertainty(table) else "latent"
    nan = np.full(n, np.nan, np.float32)
    est = nan
    if chosen in ests:
        e, names = ests[chosen]
        est = e.predict(build_features(latent, cols, names))
    est2 = nan
    if "mlp2d" in ests:
        e, names = ests["mlp2d"]
        est2 = e.predict(build_features(latent, cols, names))
    nov = ref.manifest.get("novelty") or {}
    if not nov:
        raise BundleError(f"{ref.path}: no novelty reference in the bundle; run "
                          "`segexplain analyze` again with this version")
    dims = int(nov["space_dims"])
    evr = pca.explained_variance_ratio_
    ref_latent = whiten(ref.array("latent")[ref.array("novelty_reference_ids")], evr)
    knn = KNNNovelty(k=int(nov["k"]))
    knn.reference_ = np.ascontiguousarray(ref_latent[:, :dims], np.float32)
    knn.reference_distances_ = ref.array("novelty_reference_distances")
    dist = knn.distance(whiten(latent, evr)[:, :dims])
    pct = knn.percentile(dist)
    cluster = np.full(n, -1, np.int64)
    if ref.has_array("cluster_centers"):
        centres = ref.array("cluster_centers")
        # nearest centre by the tiled kNN: no (N, k, C) difference array
        _, nearest = exact_knn(latent[:, :centres.shape[1]], centres, 1)
        cluster = nearest[:, 0].astype(np.int64)
    out = Estimate(table=table, latent=latent, pca=pca, est_iou=est, est_iou_2d=est2,
                   estimator=chosen, cluster=cluster, novelty_distance=dist.astype(np.float32),
                   novelty_pct=pct)
    iou = np.asarray(table.columns["iou"], np.float64)
    if np.isfinite(iou).any():
        out.scores = {chosen: regression_scores(iou, est)}
        if "mlp2d" in ests:
            out.scores["mlp2d"] = regression_scores(iou, est2)
        if chosen != "latent" and "latent" in ests:
            e, names = ests["latent"]
            out.scores["latent"] = regression_scores(
                iou, e.predict(build_features(latent, cols, names)))
    if ref.has_array("novelty_distance"):
        split = np.asarray(ref.patches["split"]).astype(str)
        ref_dist = ref.array("novelty_distance")
        val = ref_dist[split == "val"]
        if val.size:
            out.novelty_auroc = auroc(dist, val)
    if n >= 1:
        out.clusters = cluster_table(cluster, latent[:, :dims], table.columns)
    entry = ref.manifest.get("region")
    if entry and has_confidence(cols) and "full" in ests and "mlp2d" in ests:
        model = RegionModel(entry.get("atc_threshold"),
                            {k: ests[k] for k in ("mlp2d", "full")})
        out.region = region_report(model, latent, cols, pct, entry["interval"])
    out.label_error = label_error_score(table.columns)
    out.stats = run_statistics(table)
    return out
