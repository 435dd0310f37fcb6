"""Novelty: how far a patch lies from the reference patches in the latent space.

A patch's raw novelty is its mean Euclidean distance to the `k` nearest reference patches
in the reference's PCA space (up to 50 components). It is reported as a percentile of
the reference's own distances, computed the same way for reference patches with the
patch itself left out -- or, when groups (images) are given, with every patch of its own
image left out. Leave-one-image-out is the calibration that matches a new image: a
reference patch's neighbours in its own image (overlapping, adjacent, same light) would
otherwise make the reference look far tighter than any unseen image can be.

A novelty of 50 means "as far from the reference as a typical reference patch is from
the rest"; 99 means farther than 99 % of them; 100 beyond them all.

Numpy only, so it runs wherever a bundle is read. The neighbours come from `knn.py`:
an exact search tiled around one float32 GEMM per tile (about 1.4-1.5x the time of the
bare GEMM of the same shapes, `bench/analytics.py`), or, from `IVF_MIN_REFERENCE` (150,000)
reference rows on, an IVF index (k-means lists, `nprobe` of them searched): approximate,
with its recall@k against the exact search measured by the benchmark. The reference
distribution uses at most `max_reference_queries` reference patches (a random subset),
searched the same way as the patches it calibrates.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError, EmptyInputError
from .knn import IVF_MIN_REFERENCE, TILE_COLS, IVFIndex, search

#: distance-matrix elements per tile (16 M float32 = 64 MiB): query tile x reference tile
CHUNK_ELEMS = 1 << 24


def mean_distance(d2: np.ndarray) -> np.ndarray:
    """Mean of the square roots of each row's finite entries (inf where there are none)."""
    finite = np.isfinite(d2)
    dist = np.sqrt(np.where(finite, d2, 0.0).astype(np.float64))
    counts = finite.sum(axis=1)
    return np.where(counts > 0, dist.sum(axis=1) / np.maximum(counts, 1), np.inf)


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int,
                 query_groups: np.ndarray | None = None,
                 reference_groups: np.ndarray | None = None,
                 exclude_self: np.ndarray | None = None,
                 chunk_elems: int = CHUNK_ELEMS,
                 index: IVFIndex | None = None) -> np.ndarray:
    """Mean distance (N,) of each query row to its `k` nearest reference rows.

    `query_groups` / `reference_groups`: rows of the same group are not neighbours.
    `exclude_self`: for each query, the index of a reference row to skip (-1: none).
    `index`: an `IVFIndex` fitted on `reference` (approximate search); None: exact,
    in tiles of about `chunk_elems` distances.
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    r = np.ascontiguousarray(reference, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ConfigurationError(f"query {q.shape} and reference {r.shape}: expected two "
                                 "(N, K) arrays of the same K")
    if r.shape[0] == 0:
        raise EmptyInputError("no reference patches to measure novelty against")
    tile_cols = max(1, min(TILE_COLS, r.shape[0]))
    tile_rows = max(1, int(chunk_elems) // tile_cols)
    d2, _ = search(q, r, k, query_groups, reference_groups, exclude_self, index,
                   tile_rows, tile_cols)
    return mean_distance(d2)


def percentile_of(values: np.ndarray, sorted_reference: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each value among `sorted_reference` (ties count half)."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.searchsorted(sorted_reference, v, side="left")
    hi = np.searchsorted(sorted_reference, v, side="right")
    out = 100.0 * (lo + hi) / (2.0 * max(1, sorted_reference.size))
    return np.where(np.isnan(v), np.nan, out).astype(np.float32)


class KNNNovelty:
    """kNN distance to a reference set, calibrated on the reference's own distances.

    From `ivf_min_reference` reference rows on, neighbours come from an `IVFIndex`
    (approximate, see `knn.py`), built once on the reference and used for the
    calibration and every query alike.

    Fitted attributes: `reference_` (M, K) float32, `reference_distances_` (sorted,
    float64: leave-one-out or leave-one-group-out kNN distances of reference rows),
    `grouped_` (whether groups were used), `index_` (the IVF index or None: exact).
    """

    def __init__(self, k: int = 10, max_reference_queries: int = 5000,
                 random_state: int = 0, ivf_min_reference: int = IVF_MIN_REFERENCE) -> None:
        self.k = k
        self.max_reference_queries = max_reference_queries
        self.random_state = random_state
        self.ivf_min_reference = ivf_min_reference
        self.index_: IVFIndex | None = None

    def _index(self) -> IVFIndex | None:
        """The IVF index for a large reference (built on first use), None below the size."""
        if self.index_ is None and self.reference_.shape[0] >= self.ivf_min_reference:
            self.index_ = IVFIndex(random_state=self.random_state).fit(self.reference_)
        return self.index_

    def fit(self, reference: np.ndarray, groups: np.ndarray | None = None) -> KNNNovelty:
        """Keep `reference` (M, K) and compute its own kNN distances; returns self."""
        ref = np.ascontiguousarray(reference, dtype=np.float32)
        m = ref.shape[0]
        if m < 2:
            raise EmptyInputError(f"{m} reference patch(es): novelty needs at least 2")
        if groups is not None and len(np.unique(groups)) < 2:
            groups = None
        rng = np.random.default_rng(self.random_state)
        rows = (np.sort(rng.choice(m, self.max_reference_queries, replace=False))
                if m > self.max_reference_queries else np.arange(m))
        self.reference_ = ref
        self.index_ = None
        if groups is not None:
            g = np.asarray(groups)
            dist = knn_distance(ref[rows], ref, self.k, g[rows], g, index=self._index())
        else:
            dist = knn_distance(ref[rows], ref, self.k, exclude_self=rows, index=self._index())
        self.reference_distances_ = np.sort(dist[np.isfinite(dist)])
        self.grouped_ = groups is not None
        return self

    def distance(self, x: np.ndarray, groups: np.ndarray | None = None,
                 reference_groups: np.ndarray | None = None,
                 exclude_self: np.ndarray | None = None) -> np.ndarray:
        """Raw novelty: mean distance of rows of `x` to their k nearest reference rows.

        `exclude_self`: per row of `x`, a reference row it may not use (-1: none).
        """
        return knn_distance(x, self.reference_, self.k, groups, reference_groups,
                            exclude_self, index=self._index())

    def percentile(self, distance: np.ndarray) -> np.ndarray:
        """Novelty percentile (0-100) of raw distances among the reference's own."""
        return percentile_of(distance, self.reference_distances_)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Novelty percentile (0-100) of rows of `x`."""
        return self.percentile(self.distance(x))


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """Area under the ROC curve of scores: P(positive > negative), ties counted half."""
    p = np.asarray(positive, np.float64)
    n = np.asarray(negative, np.float64)
    p, n = p[np.isfinite(p)], n[np.isfinite(n)]
    if p.size == 0 or n.size == 0:
        return float("nan")
    allv = np.concatenate([p, n])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size, dtype=np.float64)
    sorted_v = allv[order]
    # average ranks for ties
    _, first, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[: p.size].sum() - p.size * (p.size + 1) / 2.0
    return float(u / (p.size * n.size))
