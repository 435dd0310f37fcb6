"""Similar patches across bundles: "where else does the model see this?" (numpy + stdlib).

Bundles that share a latent space (an analysis bundle and the estimates made against
it carry the same PCA basis) place their patches in one space; a patch's neighbours are
the patches nearest to it there, in any of those bundles. The space is the one novelty
is measured in: the first `space_dims` PCA components, each divided by the square root
of its explained-variance ratio (components explaining less than 1e-6 dropped), so no
component dominates by scale alone.

`latent_space_id` fingerprints a bundle's PCA basis (mean and components); bundles
with different fingerprints are never compared. The QGIS plugin uses this module (it
imports no worker package).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .reader import Bundle

#: components of the similarity space when the manifest does not say
DEFAULT_DIMS = 50


def latent_space_id(mean: np.ndarray, components: np.ndarray) -> str:
    """Fingerprint (16 hex digits) of a PCA basis: equal for bundles sharing the space."""
    h = hashlib.sha256()
    for a in (mean, components):
        arr = np.ascontiguousarray(np.asarray(a, np.float32))
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def bundle_space_id(b: Bundle) -> str:
    """The bundle's `latent_space.id` (computed from its arrays for older bundles)."""
    sid = (b.manifest.get("latent_space") or {}).get("id")
    return str(sid) if sid else latent_space_id(b.array("pca_mean"), b.array("pca_components"))


def similarity_space(b: Bundle) -> np.ndarray:
    """(N, K) float32: every patch of `b` in the whitened similarity space."""
    dims = int((b.manifest.get("latent_space") or {}).get("dims")
               or (b.manifest.get("novelty") or {}).get("space_dims") or DEFAULT_DIMS)
    latent = np.asarray(b.array("latent"), np.float32)[:, :dims]
    evr = np.asarray(b.array("pca_explained_variance_ratio"), np.float64)[:latent.shape[1]]
    keep = int(np.count_nonzero(evr > 1e-6))
    return (latent[:, :keep] / np.sqrt(evr[:keep])).astype(np.float32)


@dataclass(frozen=True)
class Neighbour:
    """One similar patch: which bundle (index into the list given), which patch, how far."""

    bundle: int
    patch_id: int
    distance: float


class SimilarityIndex:
    """Nearest patches across several bundles; bundles of another latent space are skipped.

    A search costs one matrix-vector product per bundle (squared norms kept with the
    coordinates), then exact distances for the candidates only.
    """

    def __init__(self, bundles: Sequence[Bundle]) -> None:
        self.bundles = list(bundles)
        self.space_ids = [bundle_space_id(b) for b in self.bundles]
        self._spaces: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _space(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._spaces:
            pts = similarity_space(self.bundles[i])
            norms = np.einsum("ij,ij->i", pts, pts, dtype=np.float64).astype(np.float32)
            self._spaces[i] = (pts, norms)
        return self._spaces[i]

    def space(self, i: int) -> np.ndarray:
        """Similarity coordinates of bundle `i` (computed once)."""
        return self._space(i)[0]

    def nearest(self, bundle: int, patch_id: int, k: int = 10,
                include_self: bool = False) -> list[Neighbour]:
        """The `k` patches nearest to patch `patch_id` of bundle index `bundle`.

        Searched over every bundle sharing its latent space; nearest first.
        """
        query = self.space(bundle)[int(patch_id)]
        found: list[tuple[float, int, int]] = []
        for i, sid in enumerate(self.space_ids):
            if sid != self.space_ids[bundle]:
                continue
            pts, norms = self._space(i)
            d2 = norms - 2.0 * (pts @ query)  # + |query|^2, the same for every row
            if i == bundle and not include_self:
                d2[int(patch_id)] = np.inf
            # a margin for float32 rounding, then exact distances of the candidates
            take = min(k + 8, d2.size)
            if not take:
                continue
            idx = np.argpartition(d2, take - 1)[:take]
            exact = np.sqrt(((pts[idx] - query[None, :]) ** 2).sum(axis=1, dtype=np.float64))
            exact[~np.isfinite(d2[idx])] = np.inf
            found.extend((float(dist), i, int(j)) for dist, j in zip(exact, idx, strict=True)
                         if np.isfinite(dist))
        found.sort()
        return [Neighbour(i, j, dist) for dist, i, j in found[:k]]
