"""One opened bundle: its attributes, map layers, footprint link and selection."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qgis.core import QgsProject

from ..core.bundle.reader import Bundle, column_names, read_table
from ..core.errors import BundleError
from .coverage import ESTIMATE_COLUMNS, claimed, unknown_mask
from .layers import BundleLayers, load_bundle_layers
from .link import FootprintLink
from .selection import MapSync, Selection

#: Columns of the patches layer the explorer reads (the rest stays on disk).
UI_COLUMNS = ("patch_id", "image", "region", "pc1", "pc2", "iou", "est_iou",
              "cluster", "novelty")
#: How far the numbers hold (bundles before them lack these columns: left out on reading).
TRUST_COLUMNS = ("covered", "label_error", "conf_fp_frac", "conf_fn_frac")


class BundleSession:
    """A bundle opened in the explorer (read-only on disk)."""

    def __init__(self, path: str | Path, project: QgsProject | None = None,
                 with_layers: bool = True) -> None:
        self.bundle = Bundle(path)
        self.key = str(self.bundle.path)
        self.name = self.bundle.path.name.removesuffix(".segx")
        cols = read_table(self.bundle.path, "patches", UI_COLUMNS + TRUST_COLUMNS,
                          missing_ok=True)
        for needed in ("patch_id", "pc1", "pc2"):
            if needed not in cols:
                raise BundleError(f"{self.bundle.gpkg}: the patches layer has no column "
                                  f"{needed!r}; expected a segexplain bundle: run the "
                                  "analysis again")
        n = len(cols.get("patch_id", []))
        if n == 0:
            raise BundleError(f"{self.bundle.gpkg}: the patches layer is empty; expected "
                              "one row per patch: run the analysis again")
        if not np.array_equal(cols["patch_id"], np.arange(n)):
            raise BundleError(f"{self.bundle.gpkg}: patch ids are not 0..{n - 1}; the "
                              "bundle is damaged: run the analysis again")
        self.n = n
        self.columns = cols
        self._has: dict[str, bool] = {}
        self.x = np.asarray(cols["pc1"], dtype=float)
        self.y = np.asarray(cols["pc2"], dtype=float)
        #: patches whose estimate is not claimed (beyond the reference's coverage)
        self.unknown = unknown_mask(cols, n)
        #: what is selected; kept in step with the footprint layer's selection
        self.selection = Selection(self.x, self.y, claimed(cols.get(self.score_column),
                                                           self.score_column, self.unknown))
        self.project = project or QgsProject.instance()
        self.layers: BundleLayers | None = None
        self.link: FootprintLink | None = None
        self.map_sync: MapSync | None = None
        if with_layers:
            self.layers = load_bundle_layers(self.bundle, cols, self.project)
            try:
                # a bundle with its columns as arrays has its rows in patch_id order
                self.link = FootprintLink(self.layers.footprints, n, self.bundle.gpkg,
                                          in_order=bool(column_names(self.bundle.path)))
            except Exception:
                self.layers.remove(self.project)
                raise
            self.map_sync = MapSync(self.selection, self.link)

    # -- facts -----------------------------------------------------------------------
    @property
    def kind(self) -> str:
        """"analysis" or "estimate"."""
        return self.bundle.kind

    @property
    def iou_convention(self) -> str:
        """The bundle's IoU convention ("zero", "one", "exclude")."""
        return str(self.bundle.manifest.get("iou_convention", "zero"))

    def has(self, column: str) -> bool:
        """Whether the column exists and has at least one value (answers are kept)."""
        known = self._has
        if column not in known:
            v = self.columns.get(column)
            if v is None:
                known[column] = False
            elif v.dtype == object:
                known[column] = any(x is not None for x in v)  # stops at the first
            else:
                known[column] = bool(np.isfinite(v).any())
        return bool(known[column])

    @property
    def has_labels(self) -> bool:
        """True when some patch has a ground-truth IoU."""
        return self.has("iou")

    @property
    def score_column(self) -> str:
        """The column that summarises quality: IoU, or estimated IoU without labels."""
        return "iou" if self.has_labels else "est_iou"

    def explained_variance(self) -> list[float]:
        """Explained variance ratio of pc1, pc2 (empty when unknown)."""
        evr = (self.bundle.manifest.get("pca") or {}).get("explained_variance_ratio") or []
        return [float(v) for v in evr[:2]]

    # -- selection -------------------------------------------------------------------
    @property
    def selected(self) -> np.ndarray:
        """Boolean mask of the selected patches (read-only; change it via `selection`)."""
        return self.selection.mask

    def summary(self) -> tuple[int, float]:
        """(count, mean score) of the selection (unknown estimates left out of the mean)."""
        return self.selection.summary()

    def unknown_selected(self) -> int:
        """Selected patches whose score is an unclaimed estimate (not in the mean)."""
        if self.score_column not in ESTIMATE_COLUMNS or not self.unknown.any():
            return 0
        return int(np.count_nonzero(self.unknown[self.selection.ids()]))

    # -- teardown --------------------------------------------------------------------
    def _unlink(self) -> None:
        if self.map_sync is not None:
            self.map_sync.close()
            self.map_sync = None
        if self.link is not None:
            self.link.disconnect()
            self.link = None

    def detach_layers(self) -> None:
        """The user removed the layers: stop following them, leave the project as it is."""
        self._unlink()
        self.layers = None

    def close(self) -> None:
        """Disconnect from the layer and take the layers off the map (idempotent)."""
        self._unlink()
        if self.layers is not None:
            self.layers.remove(self.project)
            self.layers = None
