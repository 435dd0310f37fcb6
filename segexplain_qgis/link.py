"""Selection linked both ways between the latent scatter and a footprint layer.

The fid <-> patch_id mapping is built once on load from the GeoPackage with sqlite3:
bundles are written with FIDs 1..N in patch_id order. The FID range and the feature
count (indexed, instant) and one scan in SQLite confirm it (about 0.4 s for a million
patches, no row reaches Python); bundles that store their patches columns as arrays
(`columns/*.npy`) come from a writer that writes every row in patch_id order, and for
them the FID range suffices. Otherwise every (fid, patch_id) pair is read,
and as a last resort the features are read once through QGIS, attributes only. A guard flag
breaks the feedback loop: pushing a selection to the layer fires the layer's
`selectionChanged`, which must not come back to the scatter as a new selection.

The layer's `selectionChanged` reaches a slot without arguments: a Python callable
taking them would have the sets of selected and deselected ids converted to Python on
every change (tens of milliseconds for 100,000 ids), only to be ignored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
from qgis.core import QgsFeatureRequest, QgsVectorLayer
from qgis.PyQt.QtCore import QObject, pyqtSlot

from ..core.bundle.reader import open_gpkg, primary_key, read_table
from ..core.errors import BundleError


def fid_mapping_from_gpkg(gpkg: Path, n: int, in_order: bool = False) -> np.ndarray | None:
    """Fid per patch_id read from the GeoPackage's primary key (None if not possible).

    `in_order`: the writer put the rows in patch_id order (no scan to confirm it).
    """
    try:
        pk = primary_key(gpkg, "patches")
        if pk is None:
            return None
        with open_gpkg(gpkg) as con:
            if _fids_follow_patch_ids(con, pk.replace('"', '""'), n, in_order):
                return np.arange(1, n + 1, dtype=np.int64)
        cols = read_table(gpkg, "patches", [pk, "patch_id"], arrays=False)
    except BundleError:
        return None
    fid, pid = cols[pk], cols["patch_id"]
    if fid.dtype != np.int64 or pid.dtype != np.int64:  # NULLs: not a usable key
        return None
    fids = np.full(n, -1, dtype=np.int64)
    ok = (pid >= 0) & (pid < n)
    fids[pid[ok]] = fid[ok]
    return fids


def _fids_follow_patch_ids(con: sqlite3.Connection, pk_col: str, n: int,
                           in_order: bool = False) -> bool:
    """Whether the rows are exactly fid 1..n with patch_id = fid - 1 (no row read out).

    `in_order`: trust that row k holds patch k - 1 once the FIDs are exactly 1..n.
    """
    # identifiers only (the primary key's name, quoted by the caller); read-only database
    lo, hi = con.execute(f'SELECT (SELECT min("{pk_col}") FROM patches), '  # noqa: S608
                         f'(SELECT max("{pk_col}") FROM patches)').fetchone()  # nosec B608
    if lo != 1 or hi != n:
        return False
    if in_order:  # the writer wrote every patch, in order: FIDs 1..n say it all
        return True
    try:  # the feature count OGR keeps up to date (triggers) for its GeoPackages
        row = con.execute("SELECT feature_count FROM gpkg_ogr_contents "
                          "WHERE table_name = 'patches'").fetchone()
    except sqlite3.Error:
        row = None
    count = row[0] if row is not None and row[0] is not None else con.execute(
        "SELECT count(*) FROM patches").fetchone()[0]
    if count != n:
        return False
    odd = con.execute(f'SELECT 1 FROM patches WHERE patch_id IS NULL OR '  # noqa: S608
                      f'patch_id != "{pk_col}" - 1 LIMIT 1').fetchone()  # nosec B608
    return odd is None


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


class _Receiver(QObject):
    """A slot without arguments for a signal whose arguments are not wanted."""

    def __init__(self, callback: Callable[[], None]) -> None:
        super().__init__()
        self.callback = callback

    @pyqtSlot()
    def changed(self) -> None:
        """Call the callback."""
        self.callback()


class FootprintLink:
    """Keeps a boolean patch selection and a footprint layer's selection in step."""

    def __init__(self, layer: QgsVectorLayer, n: int, gpkg: Path | None = None,
                 on_map_selection: Callable[[np.ndarray], None] | None = None,
                 in_order: bool = False) -> None:
        self.layer = layer
        self.n = n
        fids = fid_mapping_from_gpkg(gpkg, n, in_order) if gpkg is not None else None
        if fids is None or (fids < 0).any():
            fids = fid_mapping_from_layer(layer, n)
        self.fid_of = fids                                  # patch_id -> fid
        #: fid = patch_id + 1 for every patch (as bundles are written): no look-up table
        self.identity = bool(n > 0 and np.array_equal(fids, np.arange(1, n + 1)))
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None
        self.on_map_selection = on_map_selection
        self._pushing = False
        #: the patches selected on the layer as far as this link knows (None: unknown)
        self._shown: np.ndarray | None = None
        self._shown_count = -1
        self._receiver = _Receiver(self._layer_selection_changed)
        layer.selectionChanged.connect(self._receiver.changed)
        self._connected = True

    # -- mapping ---------------------------------------------------------------------
    def patch_ids_of(self, fids: list[int] | np.ndarray) -> np.ndarray:
        """Patch ids of the given feature ids (unknown fids are dropped)."""
        f = np.asarray(fids if isinstance(fids, np.ndarray) else list(fids), dtype=np.int64)
        if f.size == 0:
            return f
        if self.identity:
            p = f - 1
            return np.sort(p[(p >= 0) & (p < self.n)])
        if self._sorted is None:
            order = np.argsort(self.fid_of, kind="stable")
            self._sorted = (self.fid_of[order], order)
        sorted_fids, sorted_pids = self._sorted
        pos = np.clip(np.searchsorted(sorted_fids, f), 0, len(sorted_fids) - 1)
        ok = sorted_fids[pos] == f
        return np.sort(sorted_pids[pos[ok]])

    # -- scatter -> map --------------------------------------------------------------
    def _fids(self, mask: np.ndarray) -> list[int]:
        if self.identity:
            return (np.flatnonzero(mask) + 1).tolist()
        fids = self.fid_of[mask]
        return fids[fids >= 0].tolist()

    def push(self, mask: np.ndarray) -> None:
        """Make the layer's selection the patches where `mask` is true.

        QGIS converts every id handed over into its own set: when fewer patches change
        than end up selected (a brush adding to or taking from a large selection), only
        the change is handed over.
        """
        mask = np.array(mask, dtype=bool)
        self._pushing = True
        try:
            last = self._shown
            if last is not None and self.layer.selectedFeatureCount() == self._shown_count:
                changed = mask ^ last
                n_changed = int(np.count_nonzero(changed))
                if n_changed < int(np.count_nonzero(mask)):
                    added, removed = changed & mask, changed & last
                    if removed.any():
                        self.layer.deselect(self._fids(removed))
                    if added.any():
                        self.layer.select(self._fids(added))
                    self._remember(mask)
                    return
            self.layer.selectByIds(self._fids(mask))
            self._remember(mask)
        finally:
            self._pushing = False

    def _remember(self, mask: np.ndarray | None) -> None:
        """What the layer shows as selected, as far as this link knows."""
        self._shown = mask
        self._shown_count = -1 if mask is None else int(np.count_nonzero(mask))

    # -- map -> scatter --------------------------------------------------------------
    def mask_from_layer(self) -> np.ndarray:
        """Boolean patch mask of the layer's current selection."""
        mask = np.zeros(self.n, dtype=bool)
        mask[self.patch_ids_of(self.layer.selectedFeatureIds())] = True
        return mask

    def _layer_selection_changed(self) -> None:
        if self._pushing:
            return
        self._remember(None)
        if self.on_map_selection is None:
            return
        mask = self.mask_from_layer()
        self._remember(mask)
        self.on_map_selection(mask)

    def disconnect(self) -> None:
        """Stop listening to the layer (idempotent; safe after the layer is gone)."""
        if self._connected:
            try:
                self.layer.selectionChanged.disconnect(self._receiver.changed)
            except (TypeError, RuntimeError):
                pass
            self._connected = False
        self.on_map_selection = None
