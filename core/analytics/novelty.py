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

Numpy only (chunked brute force), so it runs wherever a bundle is read; the work is
O(queries x reference x K), bounded in memory by `chunk_elems`. The reference
distribution uses at most `max_reference_queries` reference patches (a random subset).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError, EmptyInputError

#: distance-matrix elements per chunk (16 M float32 = 64 MiB)
CHUNK_ELEMS = 1 << 24


def knn_distance(query: np.ndarray, reference: np.ndarray, k: int,
                 query_groups: np.ndarray | None = None,
                 reference_groups: np.ndarray | None = None,
                 exclude_self: np.ndarray | None = None,
                 chunk_elems: int = CHUNK_ELEMS) -> np.ndarray:
    """Mean distance (N,) of each query row to its `k` nearest reference rows.

    `query_groups` / `reference_groups`: rows of the same group are not neighbours.
    `exclude_self`: for each query, the index of a reference row to skip (-1: none).
    """
    q = np.ascontiguousarray(query, dtype=np.float32)
    r = np.ascontiguousarray(reference, dtype=np.float32)
    if q.ndim != 2 or r.ndim != 2 or q.shape[1] != r.shape[1]:
        raise ConfigurationError(f"query {q.shape} and reference {r.shape}: expected two "
                                 "(N, K) arrays of the same K")
    if r.shape[0] == 0:
        raise EmptyInputError("no reference patches to measure novelty against")
    kk = int(min(k, r.shape[0]))
    qg = rg = None
    if query_groups is not None and reference_groups is not None:
        # integer codes: comparing ints per distance-matrix cell is far cheaper than strings
        _, codes = np.unique(np.concatenate([np.asarray(query_groups).astype(str),
                                             np.asarray(reference_groups).astype(str)]),
                             return_inverse=True)
        qg, rg = codes[:q.shape[0]], codes[q.shape[0]:]
    r2 = (r.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    step = max(1, int(chunk_elems) // max(1, r.shape[0]))
    out = np.empty(q.shape[0], dtype=np.float64)
    for s in range(0, q.shape[0], step):
        qc = q[s:s + step]
        d2 = (qc.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)[:, None] + r2[None, :]
        d2 -= 2.0 * (qc @ r.T)
        np.maximum(d2, 0.0, out=d2)
        if qg is not None and rg is not None:
            d2[qg[s:s + step, None] == rg[None, :]] = np.inf
        if exclude_self is not None:
            rows = np.arange(qc.shape[0])
            cols = exclude_self[s:s + step]
            valid = cols >= 0
            d2[rows[valid], cols[valid]] = np.inf
        part = np.partition(d2, kk - 1, axis=1)[:, :kk].astype(np.float64)
        finite = np.isfinite(part)
        dist = np.sqrt(np.where(finite, part, 0.0))
        counts = finite.sum(axis=1)
        out[s:s + step] = np.where(counts > 0, dist.sum(axis=1) / np.maximum(counts, 1),
                                   np.inf)
    return out


def percentile_of(values: np.ndarray, sorted_reference: np.ndarray) -> np.ndarray:
    """Percentile (0-100) of each value among `sorted_reference` (ties count half)."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.searchsorted(sorted_reference, v, side="left")
    hi = np.searchsorted(sorted_reference, v, side="right")
    out = 100.0 * (lo + hi) / (2.0 * max(1, sorted_reference.size))
    return np.where(np.isnan(v), np.nan, out).astype(np.float32)


class KNNNovelty:
    """kNN distance to a reference set, calibrated on the reference's own distances.

    Fitted attributes: `reference_` (M, K) float32, `reference_distances_` (sorted,
    float64: leave-one-out or leave-one-group-out kNN distances of reference rows),
    `grouped_` (whether groups were used).
    """

    def __init__(self, k: int = 10, max_reference_queries: int = 5000,
                 random_state: int = 0) -> None:
        self.k = k
        self.max_reference_queries = max_reference_queries
        self.random_state = random_state

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
        if groups is not None:
            g = np.asarray(groups)
            dist = knn_distance(ref[rows], ref, self.k, g[rows], g)
        else:
            dist = knn_distance(ref[rows], ref, self.k, exclude_self=rows)
        self.reference_ = ref
        self.reference_distances_ = np.sort(dist[np.isfinite(dist)])
        self.grouped_ = groups is not None
        return self

    def distance(self, x: np.ndarray, groups: np.ndarray | None = None,
                 reference_groups: np.ndarray | None = None) -> np.ndarray:
        """Raw novelty: mean distance of rows of `x` to their k nearest reference rows."""
        return knn_distance(x, self.reference_, self.k, groups, reference_groups)

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
