"""PCA of the pooled bottleneck vectors: the latent plane and the distance space.

`LatentPCA` is an exact PCA whose memory does not grow with the number of patches: it
streams the embeddings in chunks, accumulating the (D,) sum and the (D, D) scatter
matrix (float32 products per chunk, float64 sums) around a shift (the first chunk's
mean, which keeps the sums well conditioned), then takes the eigenvectors of the
covariance. For 70,000 x 512 embeddings that is one pass and a 512 x 512 eigenproblem,
with a working set of one chunk (8192 rows) and the 2 MiB scatter matrix whatever N
is. Above `max_fit_samples` (200,000) patches the fit uses that many rows drawn at
random (a 512 x 512 covariance, 131,000 numbers, from 200,000 rows): fitting 1,000,000
x 512 embeddings costs what 200,000 do, and `transform` still places every patch.
Results match scikit-learn's `PCA` (full SVD) up to the sign of each component,
which is fixed here so that the largest loading of each component is positive
(deterministic across runs and machines).

By default each embedding is first scaled to unit length (`normalize="l2"`): the pooled
bottleneck vectors are non-negative ReLU averages whose length follows image brightness
and contrast, and on the sample data that length alone took 84 % of the variance (pc1),
hiding what the patch shows. On unit vectors Euclidean distance is cosine distance and
pc1 / pc2 spread scene types. Measured on the sample data with the same model: the
held-out region's novelty AUROC (whitened 50-D space, see `whiten`) is 0.96 on unit
vectors against 0.84 on raw ones (0.67 without whitening).

`transform` is numpy alone (`(normalize(X) - mean_) @ components_.T`), so a bundle's
stored `pca_mean.npy` and `pca_components.npy` place new patches in the same space
anywhere.
"""

from __future__ import annotations

import numpy as np

from ..errors import BundleError, ConfigurationError, EmptyInputError

#: rows per chunk when streaming embeddings (8192 x 512 float64 = 32 MiB)
CHUNK_ROWS = 8192
#: rows the PCA is fitted on at most (a random subset above it)
MAX_FIT_SAMPLES = 200_000


class LatentPCA:
    """Principal components of embeddings, fitted in one streaming pass.

    Parameters
    ----------
    n_components:
        Components kept for distances (novelty, clustering, estimators); at most
        min(N, D). Components 0 and 1 are the latent plane (pc1, pc2).
    normalize:
        "l2" (default): scale every embedding to unit length first; "none": raw vectors.
    chunk_rows:
        Rows processed at a time; bounds the working memory.
    max_fit_samples:
        Fit on at most this many rows, a random subset (None: all rows).
    random_state:
        Seed of that subset.

    Fitted attributes: `mean_` (D,), `components_` (K, D), `explained_variance_` (K,),
    `explained_variance_ratio_` (K,), `n_samples_`, `n_features_in_`.
    """

    def __init__(self, n_components: int = 50, normalize: str = "l2",
                 chunk_rows: int = CHUNK_ROWS, max_fit_samples: int | None = MAX_FIT_SAMPLES,
                 random_state: int = 0) -> None:
        self.n_components = n_components
        self.normalize = normalize
        self.chunk_rows = chunk_rows
        self.max_fit_samples = max_fit_samples
        self.random_state = random_state

    def fit(self, x: np.ndarray) -> LatentPCA:
        """Fit on embeddings `x` (N, D); returns self."""
        if x.ndim != 2:
            raise ConfigurationError(f"embeddings of shape {x.shape}: expected (N, D)")
        n, d = x.shape
        if n < 2:
            raise EmptyInputError(f"{n} patch(es): PCA needs at least 2; analyse more imagery")
        if self.n_components < 2:
            raise ConfigurationError(f"n_components={self.n_components}: expected >= 2 "
                                     "(the latent plane needs two)")
        _check_normalize(self.normalize)
        if self.max_fit_samples and n > self.max_fit_samples:
            rng = np.random.default_rng(self.random_state)
            x = x[np.sort(rng.choice(n, int(self.max_fit_samples), replace=False))]
            n = x.shape[0]
        step = max(1, int(self.chunk_rows))
        shift = normalize_rows(x[: min(n, step)], self.normalize).mean(axis=0)
        total = np.zeros(d, dtype=np.float64)
        scatter = np.zeros((d, d), dtype=np.float64)
        for start in range(0, n, step):
            c = normalize_rows(x[start:start + step], self.normalize) - shift
            total += c.sum(axis=0)
            c32 = c.astype(np.float32)  # float32 products per chunk, float64 sums across
            scatter += c32.T @ c32
        mean_c = total / n
        cov = (scatter - n * np.outer(mean_c, mean_c)) / (n - 1)
        cov = (cov + cov.T) / 2.0
        evals, evecs = np.linalg.eigh(cov)
        order = np.argsort(evals)[::-1]
        evals = np.clip(evals[order], 0.0, None)
        evecs = evecs[:, order].T
        k = int(min(self.n_components, n, d))
        comps = evecs[:k]
        signs = np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])
        signs[signs == 0] = 1.0
        comps = comps * signs[:, None]
        total_var = float(evals.sum())
        self.mean_ = (shift + mean_c).astype(np.float32)
        self.components_ = comps.astype(np.float32)
        self.explained_variance_ = evals[:k].astype(np.float32)
        self.explained_variance_ratio_ = (
            evals[:k] / total_var if total_var > 0 else np.zeros(k)).astype(np.float32)
        self.n_samples_ = n
        self.n_features_in_ = d
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Coordinates (N, K) float32 of embeddings `x` (N, D) in the fitted space."""
        return project(x, self.mean_, self.components_, self.normalize, self.chunk_rows)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        """`fit(x)` then `transform(x)`."""
        return self.fit(x).transform(x)

    @classmethod
    def from_arrays(cls, mean: np.ndarray, components: np.ndarray,
                    explained_variance_ratio: np.ndarray | None = None,
                    normalize: str = "l2") -> LatentPCA:
        """Rebuild a fitted PCA from stored arrays (a bundle's `pca_*.npy`)."""
        if components.ndim != 2 or mean.shape != (components.shape[1],):
            raise BundleError(
                f"PCA arrays of shapes mean {mean.shape}, components {components.shape}: "
                "expected (D,) and (K, D); the bundle is damaged, run the analysis again")
        pca = cls(n_components=components.shape[0], normalize=_check_normalize(normalize))
        pca.mean_ = np.asarray(mean, dtype=np.float32)
        pca.components_ = np.asarray(components, dtype=np.float32)
        k = components.shape[0]
        pca.explained_variance_ratio_ = (np.asarray(explained_variance_ratio, np.float32)
                                         if explained_variance_ratio is not None
                                         else np.full(k, np.nan, np.float32))
        pca.n_features_in_ = components.shape[1]
        pca.n_samples_ = 0
        return pca


def _check_normalize(normalize: str) -> str:
    if normalize not in ("l2", "none"):
        raise ConfigurationError(f"normalize {normalize!r}: expected 'l2' or 'none'")
    return normalize


def normalize_rows(x: np.ndarray, normalize: str = "l2",
                   dtype: type = np.float64) -> np.ndarray:
    """Rows of `x` as `dtype`, scaled to unit length for "l2" (zero rows stay zero).

    The norms are summed in float64 whatever `dtype` (float32 rows: `project`'s speed).
    """
    a: np.ndarray = np.asarray(x, dtype=dtype)
    if normalize == "l2":
        norms = np.sqrt(np.einsum("ij,ij->i", a, a, dtype=np.float64))[:, None]
        a = a / np.where(norms > 0, norms, 1.0).astype(dtype)
    return a


def whiten(latent: np.ndarray, explained_variance_ratio: np.ndarray,
           min_ratio: float = 1e-6) -> np.ndarray:
    """PCA coordinates divided by each component's standard deviation (up to a constant).

    Components explaining less than `min_ratio` of the variance are dropped (their scale
    is noise). Distances in this space are Mahalanobis distances within the PCA subspace.
    """
    evr = np.asarray(explained_variance_ratio, dtype=np.float64)[: latent.shape[1]]
    keep = int(np.count_nonzero(evr > min_ratio))
    return (latent[:, :keep] / np.sqrt(evr[:keep])).astype(np.float32)


def project(x: np.ndarray, mean: np.ndarray, components: np.ndarray, normalize: str = "l2",
            chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """Coordinates of embeddings `x` (N, D) on stored components (K, D), numpy only."""
    if x.ndim != 2 or x.shape[1] != components.shape[1]:
        raise ConfigurationError(
            f"embeddings of shape {x.shape}: expected (N, {components.shape[1]}) like the "
            "reference; use the same model (same encoder) as the reference bundle")
    out = np.empty((x.shape[0], components.shape[0]), dtype=np.float32)
    m = mean.astype(np.float32)
    ct = components.astype(np.float32).T
    step = max(1, int(chunk_rows))
    for start in range(0, x.shape[0], step):
        rows = normalize_rows(x[start:start + step], normalize, np.float32)
        out[start:start + step] = (rows - m) @ ct
    return out


def plane_grid(points: np.ndarray, shape: tuple[int, int] = (128, 128),
               margin: float = 0.05) -> tuple[np.ndarray, list[float]]:
    """Grid centres covering 2-D `points` with a relative `margin`.

    Returns `(xy, extent)`: `xy` (H * W, 2) ordered row by row with row 0 at the lowest
    pc2 (the heatmap convention of the bundle), and `extent` [xmin, xmax, ymin, ymax] of
    the grid's outer edges.
    """
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] == 0:
        raise ConfigurationError(f"points of shape {points.shape}: expected (N >= 1, 2)")
    h, w = shape
    lo = points.min(axis=0).astype(np.float64)
    hi = points.max(axis=0).astype(np.float64)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    lo, hi = lo - margin * span, hi + margin * span
    xs = lo[0] + (np.arange(w) + 0.5) * (hi[0] - lo[0]) / w
    ys = lo[1] + (np.arange(h) + 0.5) * (hi[1] - lo[1]) / h
    gx, gy = np.meshgrid(xs, ys)
    xy = np.column_stack([gx.ravel(), gy.ravel()]).astype(np.float32)
    return xy, [float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1])]
