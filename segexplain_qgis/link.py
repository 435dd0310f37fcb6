"""Selection linked both ways between the latent scatter and a footprint layer.

The fid <-> patch_id mapping is built once on load (from the GeoPackage's primary key
with sqlite3, falling back to one attribute-only pass over the features). A guard flag
breaks the feedback loop: pushing a selection to the layer fires the layer's
`selectionChanged`, which must not come back to the scatter as a new selection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from qgis.core import QgsFeatureRequest, QgsVectorLayer

from ..core.bundle.reader import primary_key, read_table
from ..core.errors import BundleError


def fid_mapping_from_gpkg(gpkg: Path, n: int) -> np.ndarray | None:
    """Fid per patch_id read from the GeoPackage's primary key (None if not possible)."""
    try:
        pk = primary_key(gpkg, "patches")
        if pk is None:
            return None
        cols = read_table(gpkg, "patches", [pk, "patch_id"])
    except BundleError:
        return None
    fid, pid = cols[pk], cols["patch_id"]
    if fid.dtype != np.int64 or pid.dtype != np.int64:  # NULLs: not a usable key
        return None
    fids = np.full(n, -1, dtype=np.int64)
    ok = (pid >= 0) & (pid < n)
    fids[pid[ok]] = fid[ok]
    return fids


def fid_mapping_from_layer(layer: QgsVectorLayer, n: int) -> np.ndarray:
    """Fid per patch_id from one pass over the layer (attribute only, no geometry)."""
    idx = layer.fields().indexOf("patch_id")
    if idx < 0:
        raise BundleError(f"layer {layer.name()!r} has no field 'patch_id'; expected a "
                          "segexplain patches layer")
    req = QgsFeatureRequest().setFlags(QgsFeatureRequest.Flag.NoGeometry)
    req.setSubsetOfAttributes([idx])
    fids = np.full(n, -1, dtype=np.int64)
    for f in layer.getFeatures(req):
        pid = f.attribute(idx)
        if pid is not None and 0 <= int(pid) < n:
            fids[int(pid)] = f.id()
    return fids


class FootprintLink:
    """Keeps a boolean patch selection and a footprint layer's selection in step."""

    def __init__(self, layer: QgsVectorLayer, n: int, gpkg: Path | None = None,
                 on_map_selection: Callable[[np.ndarray], None] | None = None) -> None:
        self.layer = layer
        self.n = n
        fids = fid_mapping_from_gpkg(gpkg, n) if gpkg is not None else None
        if fids is None or (fids < 0).any():
            fids = fid_mapping_from_layer(layer, n)
        self.fid_of = fids                                  # patch_id -> fid
        order = np.argsort(fids, kind="stable")
        self._sorted_fids = fids[order]                     # for fid -> patch_id
        self._sorted_pids = order
        self.on_map_selection = on_map_selection
        self._pushing = False
        self._connected = False
        layer.selectionChanged.connect(self._layer_selection_changed)
        self._connected = True

    # -- mapping ---------------------------------------------------------------------
    def patch_ids_of(self, fids: list[int] | np.ndarray) -> np.ndarray:
        """Patch ids of the given feature ids (unknown fids are dropped)."""
        f = np.asarray(list(fids), dtype=np.int64)
        if f.size == 0:
            return f
        pos = np.searchsorted(self._sorted_fids, f)
        pos = np.clip(pos, 0, len(self._sorted_fids) - 1)
        ok = self._sorted_fids[pos] == f
        return np.sort(self._sorted_pids[pos[ok]])

    # -- scatter -> map --------------------------------------------------------------
    def push(self, mask: np.ndarray) -> None:
        """Make the layer's selection the patches where `mask` is true."""
        fids = self.fid_of[mask]
        self._pushing = True
        try:
            self.layer.selectByIds(fids[fids >= 0].tolist())
        finally:
            self._pushing = False

    # -- map -> scatter --------------------------------------------------------------
    def mask_from_layer(self) -> np.ndarray:
        """Boolean patch mask of the layer's current selection."""
        mask = np.zeros(self.n, dtype=bool)
        mask[self.patch_ids_of(self.layer.selectedFeatureIds())] = True
        return mask

    def _layer_selection_changed(self, *_args: object) -> None:
        if self._pushing or self.on_map_selection is None:
            return
        self.on_map_selection(self.mask_from_layer())

    def disconnect(self) -> None:
        """Stop listening to the layer (idempotent; safe after the layer is gone)."""
        if self._connected:
            try:
                self.layer.selectionChanged.disconnect(self._layer_selection_changed)
            except (TypeError, RuntimeError):
                pass
            self._connected = False
        self.on_map_selection = None
