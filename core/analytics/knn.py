"""k nearest neighbours in a latent space, numpy only: tiled exact search and an IVF index.

Both return, per query row, the `k` smallest squared Euclidean distances (ascending) and
the reference rows they belong to, with two exclusions the novelty calibration needs:
rows of the same group (image) as the query are never neighbours, and `exclude_self[i]`
names one reference row query `i` may not use.

Exact search (`exact_knn`) is brute force bounded by one float32 matrix product (GEMM)
per tile: a query tile (`tile_rows`) times a reference tile (`tile_cols`), never the
full N x M matrix. The product is augmented so that BLAS returns the ranking key
``|r|^2 - 2 q.r`` directly (``[-2q, 1] @ [r, |r|^2]^T``; the query's own ``|q|^2`` is
added to the k winners only). The first reference tile seeds each query's top k with one
`argpartition`; after it, a cell matters only if it beats the query's current k-th
distance: one comparison pass finds the few that do and only those are merged. For
reference tiles taken in random order the candidates per tile fall off like k / tiles
seen, so the work beyond the GEMM is one comparison per cell. Groups are handled without
a per-cell mask: the reference is sorted by group, so a query's own group is one
contiguous column range per tile, set to +inf before the comparison.

The IVF index (`IVFIndex`) is for large references (the novelty default uses it from
`IVF_MIN_REFERENCE` reference rows on): a k-means coarse quantiser (Lloyd iterations in
numpy on a sample of the reference) splits the reference into `nlist` lists; each query
probes its own `nprobe` nearest lists (chosen among the `NEAR_FACTOR` * nprobe centroids
nearest its nearest centroid, which spares a selection over all centroids per query).
The search loops over lists: the queries probing a list are searched exactly against
its rows as one GEMM tile (same key and exclusions) and merged into their running top
k, every query's nearest list first so that it seeds a tight k-th distance. That is
approximate: a true neighbour in a list that was not probed is missed and replaced by
the next nearest. `bench/analytics.py` measures recall@k against the exact search and
the error of the mean neighbour distance; tests/core/test_knn.py checks recall on
clustered data.

Measured (bench/analytics.py --n 1000000, this 2-core machine shared with another job,
1,000,000 queries against 700,000 reference rows in the 50-D whitened space of
synthetic embeddings): the exact search would take about 1,460 s (1.51x its bare GEMM,
74 GFLOP/s); the index (1,254 lists, 8 probed) searched in 42 s, recall@10 0.51, mean
neighbour distance 2.4 % too long, novelty percentile 3.6 points from the exact
pipeline's on average, the same side of the 95th percentile for 98.5 % of patches.
Those embeddings are 14 scene types plus isotropic noise, which whitening spreads over
43 equal dimensions: the hardest case for any partition of the space. Probing the lists
nearest the query's own list instead (one tile per list of queries) had recall 0.28 in
29 s (16 probed: 0.42 in 51 s). On clustered data (tests/core/test_knn.py) 8 of 100
lists find 0.99 of the neighbours.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigurationError, EmptyInputError

#: query rows per tile (exact search)
TILE_ROWS = 2048
#: reference rows per tile (exact search); a tile's matrix is TILE_ROWS x TILE_COLS float32
TILE_COLS = 8192
#: columns of the first reference tile that seed each query's top k by `argpartition`
SEED_COLS = 256
#: cells of one IVF tile at most (queries probing a list x the list's rows)
TILE_CELLS = TILE_ROWS * TILE_COLS
#: IVF probes of a query: its nprobe nearest among the NEAR_FACTOR * nprobe centroids
#: nearest its own centroid
NEAR_FACTOR = 8
#: reference rows from which `search` uses an IVF index instead of the exact search
IVF_MIN_REFERENCE = 150_000


def _as_matrix(a: np.ndarray, name: str) -> np.ndarray:
    m = np.ascontiguousarray(a, dtype=np.float32)
    if m.ndim != 2:
        raise ConfigurationError(f"{name} of shape {m.shape}: expected (N, K)")
    return m


def group_codes(query_groups: np.ndarray | None, reference_groups: np.ndarray | None,
                nq: int, nr: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Integer codes shared by query and reference groups (None, None without both)."""
    if query_groups is None or reference_groups is None:
        return None, None
    qg, rg = np.asarray(query_groups), np.asarray(reference_groups)
    if qg.shape != (nq,) or rg.shape != (nr,):
        raise ConfigurationError(f"groups of shapes {qg.shape} and {rg.shape}: expected "
                                 f"({nq},) and ({nr},), one per query / reference row")
    if qg.dtype.kind not in "iub" or rg.dtype.kind not in "iub":
        qg, rg = qg.astype(str), rg.astype(str)
    _, codes = np.unique(np.concatenate([qg, rg]), return_inverse=True)
    codes = codes.ravel().astype(np.int64)
    return codes[:nq], codes[nq:]


class _Reference:
    """Reference rows permuted once for the kernel, augmented with their squared norms.

    `keys` orders the rows (lexicographically, last key first as `np.lexsort`): by group
    for the exact search, by (list, group) for the IVF index, so that inside every tile
    the kernel visits a query's own group is one contiguous range of columns.
    """

    def __init__(self, ref: np.ndarray, keys: list[np.ndarray]) -> None:
        m = ref.shape[0]
        self.rows = np.lexsort(keys) if keys else np.arange(m)   # original row per position
        self.aug = np.empty((m, ref.shape[1] + 1), np.float32)
        self.aug[:, :-1] = ref[self.rows]
        self.aug[:, -1] = (self.aug[:, :-1].astype(np.float64) ** 2).sum(axis=1)
        self.position = np.empty(m, np.int64)                  # position per original row
        self.position[self.rows] = np.arange(m)

    def self_positions(self, exclude_self: np.ndarray | None) -> np.ndarray | None:
        """Positions of the reference rows each query skips (-1: none)."""
        if exclude_self is None:
            return None
        ex = np.asarray(exclude_self, np.int64)
        return np.where(ex >= 0, self.position[np.clip(ex, 0, self.rows.size - 1)], -1)


def _merge(best_d: np.ndarray, best_i: np.ndarray, rows: np.ndarray, vals: np.ndarray,
           idx: np.ndarray) -> None:
    """Merge candidates into each row's sorted top k, in place (`rows` ascending)."""
    k = best_d.shape[1]
    change = np.empty(rows.size, bool)
    change[0] = True
    np.not_equal(rows[1:], rows[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    u = rows[starts]
    inv = np.cumsum(change) - 1
    pos = np.arange(rows.size) - starts[inv]
    width = k + int(pos.max()) + 1
    buf_d = np.full((u.size, width), np.inf, np.float32)
    buf_i = np.full((u.size, width), -1, np.int64)
    buf_d[:, :k], buf_i[:, :k] = best_d[u], best_i[u]
    buf_d[inv, k + pos], buf_i[inv, k + pos] = vals, idx
    order = np.argsort(buf_d, axis=1, kind="stable")[:, :k]
    best_d[u] = np.take_along_axis(buf_d, order, axis=1)
    best_i[u] = np.take_along_axis(buf_i, order, axis=1)


def _augment(q: np.ndarray) -> np.ndarray:
    """Query rows as ``[-2q, 1]``: their product with ``[r, |r|^2]`` is the ranking key."""
    qa = np.empty((q.shape[0], q.shape[1] + 1), np.float32)
    qa[:, :-1] = -2.0 * q
    qa[:, -1] = 1.0
    return qa


def _tile_keys(qa: np.ndarray, ref: _Reference, a: int, b: int, codes: np.ndarray | None,
               qcodes: np.ndarray | None, self_pos: np.ndarray | None) -> np.ndarray:
    """Ranking keys (nq, b - a) of rows `qa` against positions [a, b), excluded cells +inf.

    `codes`: the group code per position, sorted inside [a, b); `self_pos`: per query, a
    position to skip (-1: none).
    """
    g = qa @ ref.aug[a:b].T
    nq = qa.shape[0]
    if codes is not None and qcodes is not None:
        tile_codes = codes[a:b]
        s = np.searchsorted(tile_codes, qcodes, side="left")
        n_ex = np.searchsorted(tile_codes, qcodes, side="right") - s
        if n_ex.any():
            r = np.repeat(np.arange(nq), n_ex)
            off = np.arange(r.size) - np.repeat(np.cumsum(n_ex) - n_ex, n_ex)
            g[r, np.repeat(s, n_ex) + off] = np.inf
    if self_pos is not None:
        inside = (self_pos >= a) & (self_pos < b)
        g[np.flatnonzero(inside), self_pos[inside] - a] = np.inf
    return g


def _search_block(q: np.ndarray, ref: _Reference, k: int, codes: np.ndarray | None,
                  qcodes: np.ndarray | None, self_pos: np.ndarray | None,
                  tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top-k keys (|r|^2 - 2 q.r, ascending) and reference positions for rows `q`.

    `tiles` (T, 2): [start, stop) column ranges of `ref`, visited in order; `codes`: the
    group code per position, sorted inside every tile. `self_pos`: per query, a position
    to skip (-1: none).
    """
    nq = q.shape[0]
    qa = _augment(q)
    best_d = np.full((nq, k), np.inf, np.float32)
    best_i = np.full((nq, k), -1, np.int64)
    seeded, seen = False, 0
    for a, b in tiles:
        if b <= a:
            continue
        g = _tile_keys(qa, ref, a, b, codes, qcodes, self_pos)
        w, start = b - a, 0
        if not seeded:  # seed each row's top k from the first few columns
            start = min(w, max(4 * k, SEED_COLS))
            kk = min(k, start)
            part = (np.argpartition(g[:, :start], kk - 1, axis=1)[:, :kk] if kk < start
                    else np.broadcast_to(np.arange(start), (nq, start)))
            vals = np.take_along_axis(g, part, axis=1)
            _merge(best_d, best_i, np.repeat(np.arange(nq), kk), vals.ravel(),
                   (part + a).ravel())
            seeded = kk == k
            seen += start
        # the cells that beat their row's current k-th key: one comparison, then a few
        # merges; while few columns are seen, in blocks as wide as those seen so far
        while start < w:
            stop = min(w, start + max(seen, SEED_COLS))
            view = g[:, start:stop] if start or stop < w else g
            flat = np.flatnonzero(view < best_d[:, -1:])
            if flat.size:
                rows, cols = np.divmod(flat, stop - start)
                _merge(best_d, best_i, rows, view[rows, cols], cols + (a + start))
            seen += stop - start
            start = stop
    return best_d, best_i


def _merge_tile(g: np.ndarray, a: int, best_d: np.ndarray, best_i: np.ndarray) -> None:
    """Merge a whole tile of keys `g` (columns from position `a`) into running top ks.

    Rows whose top k is not full yet first take the k smallest of the tile's first
    columns (`argpartition`); then every row merges only the cells that beat its current
    k-th key.
    """
    k, w = best_d.shape[1], g.shape[1]
    open_ = ~np.isfinite(best_d[:, -1])
    if open_.any():
        rows = np.flatnonzero(open_)
        seed = min(w, max(4 * k, 64))
        kk = min(k, seed)
        head = g[rows, :seed]
        part = (np.argpartition(head, kk - 1, axis=1)[:, :kk] if kk < seed
                else np.broadcast_to(np.arange(seed), (rows.size, seed)))
        vals = np.take_along_axis(head, part, axis=1)
        _merge(best_d, best_i, np.repeat(rows, kk), vals.ravel(), (part + a).ravel())
        g[rows, :seed] = np.inf                           # merged: not again below
    flat = np.flatnonzero(g < best_d[:, -1:])
    if flat.size:
        rows, cols = np.divmod(flat, w)
        _merge(best_d, best_i, rows, g[rows, cols], cols + a)


def _finish(q: np.ndarray, best_d: np.ndarray, best_pos: np.ndarray,
            ref_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Add |q|^2 to the keys (squared distances >= 0) and map positions to reference rows."""
    q2 = (q.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    d2 = np.maximum(best_d + q2[:, None], 0.0)
    idx = np.where(best_pos >= 0, ref_rows[np.maximum(best_pos, 0)], -1)
    missing = (idx < 0) | ~np.isfinite(best_d)
    d2[missing], idx[missing] = np.inf, -1
    return d2, idx


def exact_knn(query: np.ndarray, reference: np.ndarray, k: int,
              query_groups: np.ndarray | None = None,
              reference_groups: np.ndarray | None = None,
              exclude_self: np.ndarray | None = None, tile_rows: int = TILE_ROWS,
              tile_cols: int = TILE_COLS) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest reference rows of each query row, tiled.

    Returns `(d2, idx)`, both (N, min(k, M)): squared distances ascending (float32, +inf
    where fewer neighbours were allowed) and reference row indices (-1 there).
    """
    q, r = _as_matrix(query, "query"), _as_matrix(reference, "reference")
    if q.shape[1] != r.shape[1]:
        raise ConfigurationError(f"query {q.shape} and reference {r.shape}: expected two "
                                 "(N, K) arrays of the same K")
    if r.shape[0] == 0:
        raise EmptyInputError("no reference rows to search")
    kk = int(min(k, r.shape[0]))
    qc, rc = group_codes(query_groups, reference_groups, q.shape[0], r.shape[0])
    ref = _Reference(r, [rc] if rc is not None else [])
    codes = rc[ref.rows] if rc is not None else None
    self_pos = ref.self_positions(exclude_self)
    # tiles visited in a fixed random order: the top k tightens fast whatever the row order
    width = max(1, int(tile_cols))
    starts = np.arange(0, r.shape[0], width)
    starts = starts[np.random.default_rng(0).permutation(starts.size)]
    tiles = np.stack([starts, np.minimum(starts + width, r.shape[0])], axis=1)
    d2 = np.empty((q.shape[0], kk), np.float32)
    idx = np.empty((q.shape[0], kk), np.int64)
    step = max(1, int(tile_rows))
    for s in range(0, q.shape[0], step):
        sl = slice(s, s + step)
        bd, bi = _search_block(q[sl], ref, kk, codes, qc[sl] if qc is not None else None,
                               self_pos[sl] if self_pos is not None else None, tiles)
        d2[sl], idx[sl] = _finish(q[sl], bd, bi, ref.rows)
    return d2, idx


def _kmeans(x: np.ndarray, n_clusters: int, iters: int, rng: np.random.Generator) -> np.ndarray:
    """Lloyd's k-means (numpy), k-means|| -free: random distinct rows as the start."""
    c = x[rng.choice(x.shape[0], n_clusters, replace=False)].copy()
    for _ in range(iters):
        lab = _nearest_centroids(x, c, 1)[:, 0]
        counts = np.bincount(lab, minlength=n_clusters)
        sums = np.stack([np.bincount(lab, weights=col, minlength=n_clusters) for col in x.T],
                        axis=1)
        empty = counts == 0
        c = np.where(empty[:, None], c, sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if empty.any():  # restart empty cells on random rows
            c[empty] = x[rng.choice(x.shape[0], int(empty.sum()), replace=False)]
    return c


def _nearest_centroids(x: np.ndarray, c: np.ndarray, n: int,
                       tile_rows: int = 16384) -> np.ndarray:
    """Indices (N, n) of the `n` nearest centroids of each row (nearest first from n > 1).

    Exact for n = 1 and for 4n >= the centroids; above, the n are chosen among the 4n
    centroids nearest the row's own centroid (`NEAR_FACTOR`), which avoids a per-row
    selection over all centroids (the main cost) and rarely differs from it.
    """
    m = c.shape[0]
    n = min(n, m)
    c2 = (c.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    ct = np.ascontiguousarray(-2.0 * c.T)
    near = None
    width = NEAR_FACTOR * n
    if 1 < n and width < m:   # the centroids nearest each centroid (itself included)
        near = np.argpartition(c @ ct + c2, width - 1, axis=1)[:, :width]
    out = np.empty((x.shape[0], n), np.int64)
    for s in range(0, x.shape[0], tile_rows):
        g = x[s:s + tile_rows] @ ct
        g += c2
        if n == 1:
            out[s:s + tile_rows, 0] = np.argmin(g, axis=1)
            continue
        cand = (near[np.argmin(g, axis=1)] if near is not None
                else np.broadcast_to(np.arange(m), g.shape))
        sub = np.take_along_axis(g, cand, axis=1)
        part = np.argpartition(sub, n - 1, axis=1)[:, :n] if n < sub.shape[1] else \
            np.broadcast_to(np.arange(n), (g.shape[0], n))
        part = np.take_along_axis(
            part, np.argsort(np.take_along_axis(sub, part, axis=1), axis=1, kind="stable"),
            axis=1)
        out[s:s + tile_rows] = np.take_along_axis(cand, part, axis=1)
    return out


class IVFIndex:
    """Inverted-file index over reference rows: k-means lists, exact search in probed lists.

    Parameters
    ----------
    nlist:
        Number of lists (None: about 1.5 sqrt(M), between 16 and 4096).
    nprobe:
        Lists searched per query (its nearest ones).
    train_samples:
        Reference rows the k-means is fitted on (a random subset).
    iters:
        Lloyd iterations.

    Fitted attributes: `centroids_` (nlist, K) float32, `list_of_` (M,) list per
    reference row, `reference_` (M, K) float32.
    """

    def __init__(self, nlist: int | None = None, nprobe: int = 8,
                 train_samples: int = 50000, iters: int = 8,
                 random_state: int = 0) -> None:
        self.nlist = nlist
        self.nprobe = nprobe
        self.train_samples = train_samples
        self.iters = iters
        self.random_state = random_state

    def fit(self, reference: np.ndarray) -> IVFIndex:
        """Learn the lists of `reference` (M, K); returns self."""
        r = _as_matrix(reference, "reference")
        m = r.shape[0]
        if m == 0:
            raise EmptyInputError("no reference rows to index")
        nlist = self.nlist or int(np.clip(1.5 * math.sqrt(m), 16, 4096))
        nlist = max(1, min(nlist, m))
        rng = np.random.default_rng(self.random_state)
        sample = r[np.sort(rng.choice(m, min(m, max(self.train_samples, nlist)),
                                      replace=False))]
        self.centroids_ = _kmeans(sample, nlist, self.iters, rng)
        self.list_of_ = _nearest_centroids(r, self.centroids_, 1)[:, 0]
        self.reference_ = r
        return self

    def search(self, query: np.ndarray, k: int, query_groups: np.ndarray | None = None,
               reference_groups: np.ndarray | None = None,
               exclude_self: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Approximate k nearest reference rows; same arguments and result as `exact_knn`."""
        q = _as_matrix(query, "query")
        r = self.reference_
        if q.shape[1] != r.shape[1]:
            raise ConfigurationError(f"query {q.shape} and reference {r.shape}: expected "
                                     "two (N, K) arrays of the same K")
        kk = int(min(k, r.shape[0]))
        qc, rc = group_codes(query_groups, reference_groups, q.shape[0], r.shape[0])
        c = self.centroids_
        nprobe = max(1, min(self.nprobe, c.shape[0]))
        ref = _Reference(r, ([rc] if rc is not None else []) + [self.list_of_])
        codes = rc[ref.rows] if rc is not None else None
        bounds = np.searchsorted(self.list_of_[ref.rows], np.arange(c.shape[0] + 1))
        self_pos = ref.self_positions(exclude_self)
        # each query's own nprobe nearest lists, nearest first; then, per list, the
        # queries probing it: first every query's nearest list (it seeds a tight top k),
        # then the other probes
        nl = c.shape[0]
        probes = _nearest_centroids(q, c, nprobe)
        probes[:, 1:] += nl
        probes = probes.ravel()
        order = np.argsort(probes, kind="stable")
        q_bounds = np.searchsorted(probes[order], np.arange(2 * nl + 1))
        asked = order // nprobe                           # query per (list, probe) pair
        best_d = np.full((q.shape[0], kk), np.inf, np.float32)
        best_i = np.full((q.shape[0], kk), -1, np.int64)
        for cell in range(2 * nl):
            a, b = int(bounds[cell % nl]), int(bounds[cell % nl + 1])
            if b <= a:                                     # an empty list
                continue
            step = max(1, TILE_CELLS // max(1, b - a))   # bounded tile for large lists
            for s in range(q_bounds[cell], q_bounds[cell + 1], step):
                qrows = asked[s:min(s + step, q_bounds[cell + 1])]
                g = _tile_keys(_augment(q[qrows]), ref, a, b, codes,
                               qc[qrows] if qc is not None else None,
                               self_pos[qrows] if self_pos is not None else None)
                bd, bi = best_d[qrows], best_i[qrows]
                _merge_tile(g, a, bd, bi)
                best_d[qrows], best_i[qrows] = bd, bi
        return _finish(q, best_d, best_i, ref.rows)


def search(query: np.ndarray, reference: np.ndarray, k: int,
           query_groups: np.ndarray | None = None,
           reference_groups: np.ndarray | None = None,
           exclude_self: np.ndarray | None = None, index: IVFIndex | None = None,
           tile_rows: int = TILE_ROWS,
           tile_cols: int = TILE_COLS) -> tuple[np.ndarray, np.ndarray]:
    """Nearest neighbours: through `index` when given (built on `reference`), else exact."""
    if index is not None:
        return index.search(query, k, query_groups, reference_groups, exclude_self)
    return exact_knn(query, reference, k, query_groups, reference_groups, exclude_self,
                     tile_rows, tile_cols)
