"""The explorer dock: latent scatter + heatmap, brushes, gallery and cluster panel.

The first bundle opened sets the latent plane (axes, heatmap, clusters); further
bundles (estimates of new regions projected into the same plane) are overlaid with a
distinct marker. A brush selects in every open bundle; each bundle's selection is
mirrored on its footprint layer, and a selection made on a footprint layer comes back.

The dock lays the widgets out and wires them; what is selected lives in `selection`
(no Qt), how points are coloured in `coloring`, what happens on the canvas in `map_view`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from qgis.core import Qgis, QgsProject
from qgis.gui import QgisInterface, QgsMapCanvas
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QCloseEvent
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.bundle.reader import resolve_bundle_path
from ..core.engine.records import describe_convention
from .brushes import simplify_path
from .captions import (
    axis_labels,
    bundles_title,
    cluster_title,
    reference_warning,
    selected_title,
    selection_stats,
    tooltip_text,
)
from .clusters import ClusterPanel
from .coloring import PlaneColoring, available_choices, default_choice
from .gallery import Gallery
from .map_view import MapSelection, zoom_to_patches, zoom_to_selected
from .region_panel import RegionPanel
from .scatter import LatentScatter
from .selection import MAP, Selection, SelectionGroup
from .session import BundleSession
from .similar import Found, SimilarSearch
from .ui import guarded, show_error, show_info

TOOLS = {"rectangle": "rect", "lasso": "lasso", "pan / zoom": "pan"}


class ExplorerDock(QDockWidget):
    """Dock widget with everything needed to explore one or more bundles."""

    closed = pyqtSignal()

    def __init__(self, iface: QgisInterface | None, parent: QWidget | None = None) -> None:
        super().__init__("segexplain explorer", parent)
        self.setObjectName("SegexplainExplorerDock")
        self.iface = iface
        self.project = QgsProject.instance()
        self.sessions: list[BundleSession] = []
        self.selections = SelectionGroup()
        self._unsubscribe: dict[str, Callable[[], None]] = {}
        self._closing = False
        self._map = MapSelection(self.canvas)
        self._build()
        self.project.layersWillBeRemoved.connect(self._layers_will_be_removed)
        self._project_connected = True

    # -- construction ----------------------------------------------------------------
    def _build(self) -> None:
        root = QWidget()
        self.title = QLabel("no bundle open: Raster > segexplain > Open analysis bundle")
        self.title.setWordWrap(True)
        self.convention = QLabel("")
        self.convention.setObjectName("iouConvention")
        self.stats = QLabel("")
        self.stats.setObjectName("selectionStats")
        self.color_combo = QComboBox()
        self.color_combo.currentTextChanged.connect(self._color_changed)
        self.tool_combo = QComboBox()
        self.tool_combo.addItems(list(TOOLS))
        self.tool_combo.currentTextChanged.connect(self._tool_changed)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setToolTip("clear the selection (scatter and map)")
        self.clear_button.clicked.connect(self._clear_clicked)
        self.zoom_button = QPushButton("Zoom to selection")
        self.zoom_button.clicked.connect(self._zoom_clicked)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(60)
        self.opacity.setToolTip("heatmap opacity")
        self.opacity.valueChanged.connect(self._opacity_changed)
        self.scatter = LatentScatter()
        self.coloring = PlaneColoring(self.scatter)
        self.scatter.sigBrush.connect(self._brushed)
        self.scatter.sigClick.connect(self._scatter_clicked)
        self.similar = SimilarSearch()
        self.similar_controls = self.similar.controls
        self.scatter.tooltip_provider = self.tooltip_at
        self.gallery = Gallery()
        self.gallery.patchClicked.connect(self._patch_clicked)
        self.clusters = ClusterPanel()
        self.clusters.clusterClicked.connect(self._cluster_clicked)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("colour by"))
        bar.addWidget(self.color_combo)
        bar.addWidget(QLabel("heatmap opacity"))
        bar.addWidget(self.opacity, 1)
        bar2 = QHBoxLayout()
        bar2.addWidget(QLabel("brush"))
        bar2.addWidget(self.tool_combo)
        bar2.addWidget(QLabel("shift: add, ctrl: subtract"))
        bar2.addStretch(1)
        bar2.addWidget(self.clear_button)
        bar2.addWidget(self.zoom_button)
        tabs = QTabWidget()
        tabs.addTab(self.gallery, "Gallery")
        tabs.addTab(self.clusters, "Clusters")
        self.region = RegionPanel()
        tabs.addTab(self.region, "Region")
        self.tabs = tabs
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.scatter)
        split.addWidget(tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        self.split = split
        lay = QVBoxLayout(root)
        lay.addWidget(self.title)
        lay.addWidget(self.convention)
        lay.addLayout(bar)
        lay.addLayout(bar2)
        lay.addWidget(self.similar_controls)
        lay.addWidget(self.stats)
        lay.addWidget(split, 1)
        self.setWidget(root)
        self._update_stats()

    # -- bundles ---------------------------------------------------------------------
    @property
    def base(self) -> BundleSession | None:
        """The bundle that defines the plane (the first opened)."""
        return self.sessions[0] if self.sessions else None

    def session(self, key: str) -> BundleSession:
        """Return the open bundle with this key (its folder path)."""
        for s in self.sessions:
            if s.key == key:
                return s
        raise KeyError(key)

    def open_bundle(self, path: str | Path) -> BundleSession:
        """Open a bundle: layers on the map, points on the plane. Raises on bad bundles."""
        wanted = resolve_bundle_path(path).resolve()
        for other in self.sessions:
            if Path(other.key).resolve() == wanted:
                show_info(self.iface, f"{other.name} is already open")
                return other
        s = BundleSession(path, self.project)
        self.sessions.append(s)
        self.selections.add(s.key, s.selection)
        self._unsubscribe[s.key] = s.selection.subscribe(self._selection_changed)
        self._map.show(s)
        self.gallery.add_source(s.key, s.bundle.path, s.columns,
                                "IoU" if s.has_labels else "est. IoU")
        if s is self.base:
            self._setup_plane(s)
        else:
            self.scatter.set_overlay(s.key, s.x, s.y)
            warning = reference_warning(s, self.base) if self.base is not None else None
            if warning and self.iface is not None:
                self.iface.messageBar().pushMessage("segexplain", warning, duration=10,
                                                    level=Qgis.MessageLevel.Warning)
        self._refresh_color_choices()
        self._update_titles()
        self._refresh_selection()
        return s

    def _setup_plane(self, s: BundleSession) -> None:
        self.scatter.set_axes(*axis_labels(s.explained_variance()))
        self.coloring.show_base(s, self.color_combo.currentText())
        hm = s.bundle.heatmap()
        if hm is not None:
            grid, extent = hm
            meta = s.bundle.manifest.get("heatmap", {})
            self.scatter.set_heatmap(grid, extent, float(meta.get("vmin", 0.0)),
                                     float(meta.get("vmax", 1.0)))
            self.scatter.set_heatmap_opacity(self.opacity.value() / 100)
        else:
            self.scatter.clear_heatmap()
        try:
            table = s.bundle.clusters()
        except Exception:  # a bundle without clustering is still explorable
            table = {}
        self.clusters.set_clusters(table, "IoU" if s.has_labels else "est. IoU")

    def close_session(self, s: BundleSession) -> None:
        """Close one bundle (layers off the map, points off the plane)."""
        if s not in self.sessions:
            return
        was_base = s is self.base
        self.sessions.remove(s)
        self.selections.remove(s.key)
        self._unsubscribe.pop(s.key, lambda: None)()
        self.gallery.remove_source(s.key)
        self._map.hide(s.key)
        s.close()
        if was_base:
            self.scatter.clear()
            self.clusters.clear()
            if self.sessions:  # promote the next bundle to define the plane
                self._setup_plane(self.sessions[0])
                for other in self.sessions[1:]:
                    self.scatter.set_overlay(other.key, other.x, other.y)
        else:
            self.scatter.remove_overlay(s.key)
        self._refresh_color_choices()
        self._update_titles()
        self._refresh_selection()

    def close_all(self) -> None:
        """Close every bundle."""
        self._closing = True
        try:
            for s in list(reversed(self.sessions)):
                self.close_session(s)
        finally:
            self._closing = False

    def _layers_will_be_removed(self, ids: list[str]) -> None:
        if self._closing:
            return
        gone = set(ids)
        for s in list(self.sessions):
            if s.layers is not None and s.layers.footprints.id() in gone:
                s.detach_layers()  # the user removed them; the rest stays theirs
                self.close_session(s)

    # -- colours ---------------------------------------------------------------------
    def _refresh_color_choices(self) -> None:
        current = self.color_combo.currentText()
        choices = available_choices(lambda col: any(s.has(col) for s in self.sessions))
        self.color_combo.blockSignals(True)
        self.color_combo.clear()
        self.color_combo.addItems(choices)
        if current in choices:
            self.color_combo.setCurrentText(current)
        elif self.base is not None:
            self.color_combo.setCurrentText(default_choice(self.base.has_labels))
        self.color_combo.blockSignals(False)
        self._apply_colors()

    def set_color_by(self, label: str) -> None:
        """Colour points by one of COLOR_CHOICES' labels."""
        if self.color_combo.findText(label) < 0:
            known = [self.color_combo.itemText(i) for i in range(self.color_combo.count())]
            raise ValueError(f"colour by {label!r}: expected one of {known}")
        self.color_combo.setCurrentText(label)

    def _apply_colors(self) -> None:
        self.coloring.apply(self.sessions, self.color_combo.currentText())

    @guarded
    def _color_changed(self, *_args) -> None:
        self._apply_colors()

    # -- selection -------------------------------------------------------------------
    def brush_rect(self, x0: float, y0: float, x1: float, y1: float,
                   mode: str = "replace") -> None:
        """Select the points in a rectangle of the plane (data coordinates)."""
        self.selections.brush_rect(x0, y0, x1, y1, mode)
        self._refresh_selection()

    def brush_polygon(self, poly: np.ndarray, mode: str = "replace") -> None:
        """Select the points inside a lasso polygon (data coordinates)."""
        sx, sy = self.scatter.pixel_size()
        self.selections.brush_polygon(simplify_path(np.asarray(poly, float), min(sx, sy)),
                                      mode)
        self._refresh_selection()

    def select_mask(self, s: BundleSession, mask: np.ndarray) -> None:
        """Make `mask` the selection of one bundle (others are cleared)."""
        self.selections.only(s.key, mask)
        self._refresh_selection()

    def clear_selection(self) -> None:
        """Nothing selected anywhere."""
        self.selections.clear()
        self._refresh_selection()

    @guarded
    def _brushed(self, kind: str, pts: np.ndarray, mode: str) -> None:
        if kind == "rect":
            (x0, y0), (x1, y1) = pts
            self.brush_rect(x0, y0, x1, y1, mode)
        else:
            self.brush_polygon(pts, mode)

    def _selection_changed(self, selection: Selection, source: str) -> None:
        if source != MAP:  # the dock's own changes refresh once, after all bundles
            return
        if self.similar.from_map(selection):
            key = next(k for k, sel in self.selections if sel is selection)
            try:
                self.select_similar(key, int(selection.ids()[0]))
                return
            except Exception as exc:  # a slot of QGIS's layer: errors end here
                show_error(self.iface, exc)
        self._refresh_selection()

    def select_similar(self, key: str, pid: int, mode: str = "replace") -> Found:
        """Select patch `pid` of bundle `key` and its k most similar (gallery: nearest first)."""
        found, title = self.similar.select(self.sessions, key, pid, mode)
        self._refresh_selection([(k, p) for k, p, _ in found], title)
        self.tabs.setCurrentWidget(self.gallery)
        return found

    @guarded
    def _scatter_clicked(self, x: float, y: float, mode: str) -> None:
        hit = self.selections.nearest(x, y, *self.scatter.pixel_size(), max_px=8.0)
        if hit is not None:
            self.select_similar(hit[0], hit[1], mode)

    def _refresh_selection(self, gallery_items: Sequence[tuple[str, int]] | None = None,
                           gallery_title: str | None = None) -> None:
        self.scatter.set_highlight(*self.selections.selected_points())
        self._update_stats()
        if gallery_items is None:
            gallery_items = self.selections.selected_items()
            gallery_title = selected_title(len(gallery_items))
        self.gallery.set_items(gallery_items, gallery_title or "")

    def _update_stats(self) -> None:
        self.stats.setText(selection_stats(self.sessions))

    def _update_titles(self) -> None:
        self.title.setText(bundles_title(self.sessions))
        self.region.set_bundles([(s.name, s.bundle.manifest) for s in self.sessions])
        if not self.sessions:
            self.convention.setText("")
            return
        conv = self.base.iou_convention if self.base else "zero"
        self.convention.setText(f"IoU convention: {describe_convention(conv)}")

    def selected_ids(self, s: BundleSession | None = None) -> np.ndarray:
        """Return the selected patch ids of a bundle (the base by default)."""
        s = s or self.base
        return s.selection.ids() if s is not None else np.zeros(0, np.int64)

    # -- hover -----------------------------------------------------------------------
    def tooltip_at(self, x: float, y: float, sx: float = 1.0, sy: float = 1.0,
                   max_px: float = 8.0) -> str | None:
        """Tooltip text for the point nearest to (x, y) within `max_px` screen pixels."""
        hit = self.selections.nearest(x, y, sx, sy, max_px)
        return None if hit is None else tooltip_text(self.session(hit[0]), hit[1])

    # -- map -------------------------------------------------------------------------
    @property
    def canvas(self) -> QgsMapCanvas | None:
        """The QGIS map canvas (None without a QGIS interface)."""
        return self.iface.mapCanvas() if self.iface is not None else None

    def zoom_to_selection(self) -> None:
        """Zoom the map to the selected footprints of every bundle."""
        if self.canvas is not None:
            zoom_to_selected(self.canvas, [s.layers.footprints for s in self.sessions
                                           if s.layers is not None and s.selected.any()],
                             self.project)

    def zoom_to_patches(self, key: str, pids: list[int], scale: float = 1.2) -> None:
        """Zoom the map to the footprints of some patches of one bundle."""
        zoom_to_patches(self.canvas, self.session(key), pids, self.project, scale)

    def zoom_to_patch(self, key: str, pid: int) -> None:
        """Zoom the map to one patch and flash it."""
        zoom_to_patches(self.canvas, self.session(key), [pid], self.project, 3.0, flash=True)

    @guarded
    def _zoom_clicked(self, *_args) -> None:
        self.zoom_to_selection()

    @guarded
    def _clear_clicked(self, *_args) -> None:
        self.clear_selection()

    @guarded
    def _patch_clicked(self, key: str, pid: int) -> None:
        self.zoom_to_patch(key, pid)

    @guarded
    def _cluster_clicked(self, cluster: int) -> None:
        self.select_cluster(cluster)

    def select_cluster(self, cluster: int) -> None:
        """Select a cluster's patches (base bundle) and show its representatives."""
        s = self.base
        if s is None:
            return
        mask = np.asarray(s.columns["cluster"], float) == cluster
        self.selections.only(s.key, mask)
        reps = [r for r in self.clusters.reps.get(cluster, []) if 0 <= r < s.n]
        self._refresh_selection([(s.key, r) for r in reps],
                                cluster_title(cluster, int(mask.sum())))
        self.tabs.setCurrentWidget(self.gallery)

    @guarded
    def _tool_changed(self, text: str) -> None:
        self.scatter.set_tool(TOOLS[text])

    @guarded
    def _opacity_changed(self, value: int) -> None:
        self.scatter.set_heatmap_opacity(value / 100)

    # -- teardown --------------------------------------------------------------------
    def shutdown(self) -> None:
        """Close the bundles and drop every connection to QGIS (idempotent)."""
        self.close_all()
        self._map.off()
        self.similar.close()
        if self._project_connected:
            try:
                self.project.layersWillBeRemoved.disconnect(self._layers_will_be_removed)
            except (TypeError, RuntimeError):
                pass
            self._project_connected = False
        self.scatter.dispose()

    def closeEvent(self, event: QCloseEvent) -> None:
        try:
            self.shutdown()
        finally:
            self.closed.emit()
            super().closeEvent(event)

