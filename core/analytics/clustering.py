"""Clusters of patches in the latent space: KMeans sweep vs DBSCAN, chosen by silhouette.

- KMeans for every k in [k_min, k_max] (the source paper swept k and found k = 14),
  fitted on at most `kmeans_fit_samples` patches (a random subsample; every patch is
  then assigned to its nearest centre); each k is scored by the silhouette coefficient,
  computed on a random subsample of at most `silhouette_sample` patches (the exact
  silhouette is O(N^2)).
- DBSCAN with `eps` read off the k-distance curve (distance of every point to its
  `min_samples`-th neighbour, sorted): the knee is the point farthest from the chord
  between the curve's ends. For N above `max_dbscan_samples`, DBSCAN runs on a random
  subsample and the other patches join the cluster of their nearest core sample when it
  lies within `eps` (else they are noise), which keeps time and memory bounded. DBSCAN's
  silhouette and noise share are then measured on its subsample, and the other patches
  are assigned (an exact nearest-core search, `knn.exact_knn`) only when DBSCAN is
  chosen or its labels (`dbscan_labels_`) are read: for a million patches that search
  is the costliest step of the clustering.
- The two are compared by silhouette. DBSCAN's noise patches count with a silhouette of
  0 (they belong to no cluster; scoring only the clustered ones would reward DBSCAN
  for discarding the hard patches), and DBSCAN competes only when it finds at least
  two clusters and leaves at most `max_noise_frac` as noise; KMeans wins ties.
  Cluster ids are 0..k-1, -1 = DBSCAN noise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import ConfigurationError, EmptyInputError
from ..figures import nanmean_or_none, nanmedian_or_none


def knee_point(curve: np.ndarray) -> int:
    """Index of the point of a sorted curve farthest from the chord between its ends."""
    n = curve.size
    if n < 3:
        return n - 1
    x = np.linspace(0.0, 1.0, n)
    span = float(curve[-1] - curve[0])
    yn = (curve - curve[0]) / span if span > 0 else np.zeros(n)
    return int(np.argmax(x - yn)) if span > 0 else n - 1


def _silhouette(x: np.ndarray, labels: np.ndarray, sample: int, seed: int) -> float:
    """Silhouette of the non-noise rows, on a random sample of at most `sample` of them.

    The sample is drawn as scikit-learn's `silhouette_score(sample_size=...)` draws it,
    before any row is copied (the same score, without copying a million rows per k).
    """
    from sklearn.metrics import silhouette_score

    kept = np.flatnonzero(labels >= 0)
    n_labels = int(np.count_nonzero(np.bincount(labels[kept]))) if kept.size else 0
    if n_labels < 2 or n_labels >= kept.size:
        return float("nan")
    if kept.size > sample:
        kept = kept[np.random.RandomState(seed).permutation(kept.size)[:sample]]
    return float(silhouette_score(x[kept], labels[kept]))


class LatentClustering:
    """KMeans silhouette sweep and DBSCAN on latent coordinates; keeps the better one.

    Fitted attributes: `labels_` (N,) int, `method_` ("kmeans" or "dbscan"), `k_`
    (clusters, noise excluded), `silhouette_`, `centers_` (k, F), `sweep_` (k ->
    silhouette), `dbscan_` (eps, min_samples, clusters, noise_frac, silhouette) and
    `dbscan_labels_` (DBSCAN's labels of every row, chosen or not; computed when first
    read if DBSCAN ran on a subsample and was not chosen).
    """

    def __init__(self, k_min: int = 2, k_max: int = 20, silhouette_sample: int = 3000,
                 dbscan_min_samples: int = 10, max_dbscan_samples: int = 10000,
                 max_noise_frac: float = 0.5, kmeans_fit_samples: int = 10000,
                 random_state: int = 0) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.silhouette_sample = silhouette_sample
        self.dbscan_min_samples = dbscan_min_samples
        self.max_dbscan_samples = max_dbscan_samples
        self.max_noise_frac = max_noise_frac
        self.kmeans_fit_samples = kmeans_fit_samples
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> LatentClustering:
        """Cluster the rows of `x` (N, F); returns self."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n = x.shape[0]
        if n < 3:
            raise EmptyInputError(f"{n} patch(es): clustering needs at least 3")
        if self.k_min < 2 or self.k_max < self.k_min:
            raise ConfigurationError(f"k range {self.k_min}..{self.k_max}: expected "
                                     "2 <= k_min <= k_max (--clusters-max >= 2)")
        km_labels, km_centers, sweep = self._kmeans_sweep(x)
        self.sweep_ = sweep
        best_k = max(sweep, key=lambda k: (np.nan_to_num(sweep[k], nan=-2.0), -k))
        self.labels_, self.centers_ = km_labels[best_k], km_centers[best_k]
        self.method_, self.k_ = "kmeans", int(best_k)
        self.silhouette_ = float(sweep[best_k])
        self.dbscan_ = self._dbscan(x)
        self._dbscan_state = (x, self.dbscan_.pop("labels"), self.dbscan_.pop("assign"))
        self._dbscan_all: np.ndarray | None = None
        db_sil = self.dbscan_.get("silhouette", float("nan"))
        if (np.isfinite(db_sil) and self.dbscan_["clusters"] >= 2
                and self.dbscan_["noise_frac"] <= self.max_noise_frac
                and (not np.isfinite(self.silhouette_) or db_sil > self.silhouette_)):
            labels = self.dbscan_labels_
            self.labels_, self.method_ = labels, "dbscan"
            self.k_ = int(self.dbscan_["clusters"])
            self.silhouette_ = float(db_sil)
            self.centers_ = np.stack([x[labels == c].mean(axis=0) for c in range(self.k_)])
        return self

    @property
    def dbscan_labels_(self) -> np.ndarray:
        """DBSCAN's label (N,) of every row (-1 noise), chosen or not."""
        if self._dbscan_all is None:
            x, labels, assign = self._dbscan_state
            self._dbscan_all = assign(x, labels)
            self._dbscan_state = (x[:0], labels, assign)   # the data is no longer needed
        return self._dbscan_all

    def _kmeans_sweep(self, x: np.ndarray) -> tuple[dict[int, np.ndarray],
                                                    dict[int, np.ndarray], dict[int, float]]:
        from sklearn.cluster import KMeans

        n = x.shape[0]
        rng = np.random.default_rng(self.random_state)
        fit_rows = (np.sort(rng.choice(n, self.kmeans_fit_samples, replace=False))
                    if n > self.kmeans_fit_samples else np.arange(n))
        labels: dict[int, np.ndarray] = {}
        centers: dict[int, np.ndarray] = {}
        sweep: dict[int, float] = {}
        for k in range(self.k_min, min(self.k_max, n - 1) + 1):
            km = KMeans(n_clusters=k, n_init=1, random_state=self.random_state,
                        max_iter=100).fit(x[fit_rows])
            lab = km.predict(x) if fit_rows.size < n else km.labels_
            labels[k] = lab.astype(np.int64)
            centers[k] = km.cluster_centers_.astype(np.float32)
            sweep[k] = _silhouette(x, labels[k], self.silhouette_sample, self.random_state)
        if not sweep:
            raise EmptyInputError(f"{n} patches: too few for k >= {self.k_min} clusters")
        return labels, centers, sweep

    def _dbscan(self, x: np.ndarray) -> dict[str, Any]:
        from sklearn.cluster import DBSCAN
        from sklearn.neighbors import NearestNeighbors

        n = x.shape[0]
        ms = int(min(self.dbscan_min_samples, max(2, n // 4)))
        rng = np.random.default_rng(self.random_state + 1)
        sub = (np.sort(rng.choice(n, self.max_dbscan_samples, replace=False))
               if n > self.max_dbscan_samples else np.arange(n))
        xs = x[sub]
        dist, _ = NearestNeighbors(n_neighbors=ms).fit(xs).kneighbors(xs)
        curve = np.sort(dist[:, -1])
        eps = float(curve[knee_point(curve)])
        if eps <= 0:
            eps = float(curve[curve > 0][0]) if (curve > 0).any() else 1e-6
        db = DBSCAN(eps=eps, min_samples=ms).fit(xs)
        sub_labels = db.labels_.astype(np.int64)
        core = db.core_sample_indices_

        def assign(x_all: np.ndarray, sub_lab: np.ndarray) -> np.ndarray:
            """Labels of all rows: the subsample's, the others' from their nearest core."""
            labels = np.full(n, -1, dtype=np.int64)
            labels[sub] = sub_lab
            if sub.size < n and core.size:
                from .knn import exact_knn

                rest = np.setdiff1d(np.arange(n), sub)
                d2, j = exact_knn(x_all[rest], xs[core], 1)
                near = np.sqrt(d2[:, 0]) <= eps
                labels[rest[near]] = sub_lab[core[j[near, 0]]]
            return labels

        clusters = int(sub_labels.max() + 1) if sub_labels.size else 0
        noise = float((sub_labels < 0).mean())
        sil = _silhouette(xs, sub_labels, self.silhouette_sample, self.random_state)
        return {"eps": eps, "min_samples": ms, "clusters": clusters, "noise_frac": noise,
                "silhouette_clustered": sil, "silhouette": sil * (1.0 - noise),
                "labels": sub_labels, "assign": assign, "subsample": int(sub.size)}

    def summary(self) -> dict[str, Any]:
        """JSON-able description of the choice (for the manifest)."""
        db = dict(self.dbscan_)
        return {"method": self.method_, "k": self.k_, "silhouette": _nan_none(self.silhouette_),
                "sweep": {str(k): _nan_none(v) for k, v in self.sweep_.items()},
                "dbscan": {k: _nan_none(v) if isinstance(v, float) else v
                           for k, v in db.items()}}


def _nan_none(v: float) -> float | None:
    return None if not np.isfinite(v) else float(v)


def cluster_table(labels: np.ndarray, x: np.ndarray, columns: Mapping[str, np.ndarray],
                  n_representatives: int = 8) -> list[dict[str, Any]]:
    """Describe each cluster (noise -1 included when present).

    Per cluster: size, IoU mean / median, fractions, region mix and the patch ids
    nearest the cluster's centre.
    """
    rows = []
    region = np.asarray(columns["region"]).astype(str)
    iou_all = np.asarray(columns["iou"], np.float64)
    label_frac = np.asarray(columns["label_frac"], float)
    pred_frac = np.asarray(columns["pred_frac"], float)
    by_label = np.argsort(labels, kind="stable")
    values, starts = np.unique(labels[by_label], return_index=True)
    ends = np.r_[starts[1:], by_label.size]
    for c, a, b in zip(values.tolist(), starts.tolist(), ends.tolist(), strict=True):
        idx = by_label[a:b]
        centre = x[idx].mean(axis=0)
        order = np.argsort(((x[idx] - centre) ** 2).sum(axis=1), kind="stable")
        reps = [int(columns["patch_id"][i]) for i in idx[order[:n_representatives]]]
        iou = iou_all[idx]
        regions, counts = np.unique(region[idx], return_counts=True)
        rows.append({
            "cluster": int(c), "size": int(idx.size),
            "mean_iou": nanmean_or_none(iou), "median_iou": nanmedian_or_none(iou),
            "label_frac": nanmean_or_none(label_frac[idx]),
            "pred_frac": nanmean_or_none(pred_frac[idx]),
            "region_mix": {str(r): int(k) for r, k in zip(regions, counts, strict=True)},
            "representatives": reps,
        })
    return rows
