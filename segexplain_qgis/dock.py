"""The explorer dock: latent scatter + heatmap, brushes, gallery and cluster panel.

The first bundle opened sets the latent plane (axes, heatmap, clusters); further
bundles (estimates of new regions projected into the same plane) are overlaid with a
distinct marker. A brush selects in every open bundle; each bundle's selection is
mirrored on its footprint layer, and a selection made on a footprint layer comes back.
"""

from __future__ import annotations

from itertools import repeat
from pathlib import Path

import numpy as np
from qgis.core import Qgis, QgsCoordinateTransform, QgsProject
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
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
from ..core.figures import format_number
from .clusters import ClusterPanel
from .gallery import Gallery
from .scatter import (
    RDYLGN,
    LatentScatter,
    bin_index,
    category_color,
    colormap,
    continuous_palette,
)
from .selection import combine, nearest_point, points_in_polygon, points_in_rect, simplify_path
from .session import CATEGORICAL, COLOR_CHOICES, BundleSession
from .ui import guarded, show_info

TOOLS = {"rectangle": "rect", "lasso": "lasso", "pan / zoom": "pan"}


class ExplorerDock(QDockWidget):
    """Dock widget with everything needed to explore one or more bundles."""

    closed = pyqtSignal()

    def __init__(self, iface, parent: QWidget | None = None) -> None:
        super().__init__("segexplain explorer", parent)
        self.setObjectName("SegexplainExplorerDock")
        self.iface = iface
        self.project = QgsProject.instance()
        self.sessions: list[BundleSession] = []
        self._closing = False
        self._applied: tuple | None = None
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
        self.scatter.sigBrush.connect(self._brushed)
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
        self.tabs = tabs
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.scatter)
        split.addWidget(tabs)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        lay = QVBoxLayout(root)
        lay.addWidget(self.title)
        lay.addWidget(self.convention)
        lay.addLayout(bar)
        lay.addLayout(bar2)
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
        s = BundleSession(path, self.project, on_map_selection=self._map_selected)
        self.sessions.append(s)
        self._translucent_selection(True)
        self.gallery.add_source(s.key, s.bundle.path, s.columns,
                                "IoU" if s.has_labels else "est. IoU")
        if s is self.base:
            self._setup_plane(s)
        else:
            self.scatter.set_overlay(s.key, s.x, s.y)
            self._check_reference(s)
        self._refresh_color_choices()
        self._update_titles()
        self._refresh_selection()
        return s

    def _check_reference(self, s: BundleSession) -> None:
        """Warn when an overlaid estimate was projected into another bundle's plane."""
        ref = s.bundle.manifest.get("reference")
        if not ref or self.base is None:
            return
        p = Path(str(ref))
        p = (p if p.is_absolute() else s.bundle.path / p).resolve()
        base = self.base.bundle.path.resolve()
        if p != base and p.name != base.name:  # same name: the reference, copied elsewhere
            self.iface.messageBar().pushMessage(
                "segexplain", f"{s.name} was estimated against {p.name}, not "
                f"{self.base.bundle.path.name}: its points lie in another latent plane; open "
                "it together with its own reference to compare them",
                level=Qgis.MessageLevel.Warning, duration=10)

    def _setup_plane(self, s: BundleSession) -> None:
        evr = s.explained_variance()
        lab = [f"PC{i + 1}" + (f" ({evr[i] * 100:.1f} % of variance)" if i < len(evr)
                               else "") for i in range(2)]
        self.scatter.set_axes(lab[0], lab[1])
        column = self._initial_color_column(s)
        codes, palette, legend = self._colors(s, column)
        self.scatter.set_points(s.x, s.y, codes, palette)
        self._applied = ((s.key,), column)
        self._show_scale(column, legend)
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
        self.gallery.remove_source(s.key)
        s.close()
        if was_base:
            for o in list(self.scatter.overlays):
                self.scatter.remove_overlay(o)
            self.scatter.set_points(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), [])
            self.scatter.clear_heatmap()
            self.clusters.clear()
            if self.sessions:  # promote the next bundle to define the plane
                rest = list(self.sessions)
                self.sessions = rest
                self._setup_plane(rest[0])
                for other in rest[1:]:
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

    def _layers_will_be_removed(self, ids) -> None:
        if self._closing:
            return
        gone = set(ids)
        for s in list(self.sessions):
            if s.layers is not None and s.layers.footprints.id() in gone:
                if s.link is not None:
                    s.link.disconnect()
                    s.link = None
                s.layers = None  # the user removed them; the rest stays theirs
                self.close_session(s)

    # -- colours ---------------------------------------------------------------------
    def _initial_color_column(self, s: BundleSession) -> str:
        col = COLOR_CHOICES.get(self.color_combo.currentText())
        return col if col is not None and s.has(col) else s.score_column

    def _colors(self, s: BundleSession, column: str):
        """(codes, palette, legend entries) of one bundle's points for a colouring."""
        v = s.columns.get(column)
        if column in CATEGORICAL:
            if v is None:
                return np.zeros(s.n, np.int64), [category_color(-1)], []
            if v.dtype == object:
                names, inverse = np.unique(np.array([str(x) for x in v.tolist()]),
                                           return_inverse=True)
                palette = [category_color(i) for i in range(len(names))]
                legend = list(zip(names.tolist(), palette, strict=True))
                return inverse.astype(np.int64), palette, legend
            ids = np.nan_to_num(np.asarray(v, float), nan=-1).astype(np.int64)
            uniq, inverse = np.unique(ids, return_inverse=True)
            palette = [category_color(int(i)) for i in uniq]
            legend = [("noise" if i < 0 else f"cluster {i}", c)
                      for i, c in zip(uniq.tolist(), palette, strict=True)]
            return inverse.astype(np.int64), palette, legend
        lo, hi, reverse = (0.0, 100.0, True) if column == "novelty" else (0.0, 1.0, False)
        pal = continuous_palette(colormap(RDYLGN, reverse=reverse))
        if v is None:
            return np.full(s.n, len(pal) - 1, np.int64), pal, []
        return bin_index(np.asarray(v, float), lo, hi), pal, []

    def _refresh_color_choices(self) -> None:
        current = self.color_combo.currentText()
        choices = [label for label, col in COLOR_CHOICES.items()
                   if any(s.has(col) for s in self.sessions)]
        self.color_combo.blockSignals(True)
        self.color_combo.clear()
        self.color_combo.addItems(choices)
        if current in choices:
            self.color_combo.setCurrentText(current)
        elif self.base is not None:
            self.color_combo.setCurrentText("IoU" if self.base.has_labels else
                                            "estimated IoU")
        self.color_combo.blockSignals(False)
        self._apply_colors()

    def set_color_by(self, label: str) -> None:
        """Colour points by one of COLOR_CHOICES' labels."""
        if self.color_combo.findText(label) < 0:
            known = [self.color_combo.itemText(i) for i in range(self.color_combo.count())]
            raise ValueError(f"colour by {label!r}: expected one of {known}")
        self.color_combo.setCurrentText(label)

    def _apply_colors(self) -> None:
        if self.base is None:
            self._applied = None
            return
        label = self.color_combo.currentText()
        column = COLOR_CHOICES.get(label, self.base.score_column)
        state = (tuple(s.key for s in self.sessions), column)
        if state == self._applied:
            return  # colours already drawn (re-styling 100k points costs ~0.3 s)
        self._applied = state
        codes, palette, legend = self._colors(self.base, column)
        self.scatter.set_colors(codes, palette)
        for s in self.sessions[1:]:
            own = "est_iou" if column == "iou" and not s.has_labels else column
            self.scatter.set_overlay(s.key, s.x, s.y, *self._colors(s, own)[:2])
        self._show_scale(column, legend)

    def _show_scale(self, column: str, legend: list) -> None:
        label = next((k for k, v in COLOR_CHOICES.items() if v == column), column)
        if column in CATEGORICAL:
            self.scatter.set_categories(legend)
        elif column == "novelty":
            self.scatter.set_continuous_scale("novelty (percentile)", 0, 100,
                                              colormap(RDYLGN, reverse=True))
        else:
            self.scatter.set_continuous_scale(label, 0, 1, colormap(RDYLGN))

    @guarded
    def _color_changed(self, *_args) -> None:
        self._apply_colors()

    # -- selection -------------------------------------------------------------------
    def brush_rect(self, x0: float, y0: float, x1: float, y1: float,
                   mode: str = "replace") -> None:
        """Select the points in a rectangle of the plane (data coordinates)."""
        for s in self.sessions:
            s.set_selection(combine(s.selected, points_in_rect(s.x, s.y, x0, y0, x1, y1),
                                    mode))
        self._refresh_selection()

    def brush_polygon(self, poly: np.ndarray, mode: str = "replace") -> None:
        """Select the points inside a lasso polygon (data coordinates)."""
        sx, sy = self.scatter.pixel_size()
        poly = simplify_path(np.asarray(poly, float), min(sx, sy))
        for s in self.sessions:
            s.set_selection(combine(s.selected, points_in_polygon(s.x, s.y, poly), mode))
        self._refresh_selection()

    def select_mask(self, s: BundleSession, mask: np.ndarray) -> None:
        """Make `mask` the selection of one bundle (others are cleared)."""
        for o in self.sessions:
            o.set_selection(mask if o is s else np.zeros(o.n, bool))
        self._refresh_selection()

    def clear_selection(self) -> None:
        """Nothing selected anywhere."""
        for s in self.sessions:
            s.set_selection(np.zeros(s.n, bool))
        self._refresh_selection()

    @guarded
    def _brushed(self, kind: str, pts, mode: str) -> None:
        if kind == "rect":
            (x0, y0), (x1, y1) = pts
            self.brush_rect(x0, y0, x1, y1, mode)
        else:
            self.brush_polygon(pts, mode)

    def _map_selected(self, _s: BundleSession, _mask: np.ndarray) -> None:
        self._refresh_selection()

    def _refresh_selection(self, gallery_items: list[tuple[str, int]] | None = None,
                           gallery_title: str | None = None) -> None:
        xs = [s.x[s.selected] for s in self.sessions]
        ys = [s.y[s.selected] for s in self.sessions]
        self.scatter.set_highlight(np.concatenate(xs) if xs else np.zeros(0),
                                   np.concatenate(ys) if ys else np.zeros(0))
        self._update_stats()
        if gallery_items is None:
            gallery_items = [item for s in self.sessions
                             for item in zip(repeat(s.key), np.flatnonzero(s.selected).tolist())]
            n = len(gallery_items)
            gallery_title = f"{n} selected patch{'es' if n != 1 else ''}"
        self.gallery.set_items(gallery_items, gallery_title or "")

    def _update_stats(self) -> None:
        if not self.sessions:
            self.stats.setText("selected: 0")
            return
        parts = []
        for s in self.sessions:
            count, mean = s.summary()
            what = "IoU" if s.has_labels else "estimated IoU"
            mean_txt = format_number(mean, missing="-")
            prefix = f"{s.name}: " if len(self.sessions) > 1 else ""
            parts.append(f"{prefix}{count} of {s.n} selected, mean {what} {mean_txt}")
        self.stats.setText(" | ".join(parts))

    def _update_titles(self) -> None:
        if not self.sessions:
            self.title.setText("no bundle open")
            self.convention.setText("")
            return
        names = [f"{s.name} ({s.kind})" for s in self.sessions]
        self.title.setText("bundle: " + ", ".join(names) + (
            "  (the first defines the plane; the others are drawn as squares)" if len(names) > 1
            else ""))
        conv = self.base.iou_convention if self.base else "zero"
        self.convention.setText(f"IoU convention: {describe_convention(conv)}")

    def selected_ids(self, s: BundleSession | None = None) -> np.ndarray:
        """Return the selected patch ids of a bundle (the base by default)."""
        s = s or self.base
        return np.flatnonzero(s.selected) if s is not None else np.zeros(0, np.int64)

    # -- hover -----------------------------------------------------------------------
    def tooltip_at(self, x: float, y: float, sx: float = 1.0, sy: float = 1.0,
                   max_px: float = 8.0) -> str | None:
        """Tooltip text for the point nearest to (x, y) within `max_px` screen pixels."""
        best: tuple[float, BundleSession, int] | None = None
        for s in self.sessions:
            i = nearest_point(s.x, s.y, x, y, sx, sy, max_px)
            if i >= 0:
                d = ((s.x[i] - x) / sx) ** 2 + ((s.y[i] - y) / sy) ** 2
                if best is None or d < best[0]:
                    best = (d, s, i)
        if best is None:
            return None
        _, s, i = best
        c = s.columns

        def fmt(col: str) -> str:
            v = c.get(col)
            return format_number(v[i] if v is not None else None, missing="-")

        cl = c.get("cluster")
        cl_txt = str(int(cl[i])) if cl is not None and np.isfinite(cl[i]) else "-"
        lines = [f"patch {i} ({s.name})", f"image: {c['image'][i]}",
                 f"region: {c['region'][i]}", f"IoU: {fmt('iou')}",
                 f"estimated IoU: {fmt('est_iou')}", f"cluster: {cl_txt}"]
        if s.has("novelty"):
            lines.append(f"novelty: {fmt('novelty')}")
        return "\n".join(lines)

    # -- map -------------------------------------------------------------------------
    def zoom_to_selection(self) -> None:
        """Zoom the map to the selected footprints of every bundle."""
        canvas = self.iface.mapCanvas()
        layers = [s.layers.footprints for s in self.sessions
                  if s.layers is not None and s.selected.any()]
        if len(layers) == 1:
            canvas.zoomToSelected(layers[0])
        elif layers:
            self._zoom_union(layers)
        canvas.refresh()

    def _zoom_union(self, layers) -> None:
        canvas = self.iface.mapCanvas()
        dest = canvas.mapSettings().destinationCrs()
        rect = None
        for lyr in layers:
            r = QgsCoordinateTransform(lyr.crs(), dest, self.project).transformBoundingBox(
                lyr.boundingBoxOfSelected())
            if rect is None:
                rect = r
            else:
                rect.combineExtentWith(r)
        if rect is not None:
            canvas.setExtent(rect)

    def zoom_to_patches(self, key: str, pids: list[int], scale: float = 1.2) -> None:
        """Zoom the map to the footprints of some patches of one bundle."""
        s = self.session(key)
        if s.layers is None or s.link is None or not len(pids):
            return
        layer = s.layers.footprints
        fids = [int(s.link.fid_of[p]) for p in pids]
        rect = None
        for feat in layer.getFeatures(fids):
            r = feat.geometry().boundingBox()
            if rect is None:
                rect = r
            else:
                rect.combineExtentWith(r)
        if rect is None:
            return
        canvas = self.iface.mapCanvas()
        rect = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(),
                                      self.project).transformBoundingBox(rect)
        rect.scale(scale)
        canvas.setExtent(rect)
        canvas.refresh()

    def zoom_to_patch(self, key: str, pid: int) -> None:
        """Zoom the map to one patch and flash it."""
        self.zoom_to_patches(key, [pid], scale=3.0)
        s = self.session(key)
        if s.layers is not None and s.link is not None:
            self.iface.mapCanvas().flashFeatureIds(s.layers.footprints,
                                                   [int(s.link.fid_of[pid])])

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
        for o in self.sessions:
            o.set_selection(mask if o is s else np.zeros(o.n, bool))
        reps = [r for r in self.clusters.reps.get(cluster, []) if 0 <= r < s.n]
        name = "noise" if cluster < 0 else f"cluster {cluster}"
        self._refresh_selection([(s.key, r) for r in reps],
                                f"{name}: {int(mask.sum())} patches, representatives")
        self.tabs.setCurrentWidget(self.gallery)

    @guarded
    def _tool_changed(self, text: str) -> None:
        self.scatter.set_tool(TOOLS[text])

    @guarded
    def _opacity_changed(self, value: int) -> None:
        self.scatter.set_heatmap_opacity(value / 100)

    # -- teardown --------------------------------------------------------------------
    def _translucent_selection(self, on: bool) -> None:
        """Selected footprints glow instead of hiding the imagery; restored on shutdown.

        QGIS fills selected polygons with the canvas selection colour, opaque yellow by
        default, which would hide exactly the patches the user wants to look at.
        """
        canvas = self.iface.mapCanvas() if self.iface is not None else None
        if canvas is None:
            return
        if on and getattr(self, "_old_selection_color", None) is None:
            self._old_selection_color = QColor(canvas.selectionColor())
            glow = QColor(self._old_selection_color)
            glow.setAlpha(min(glow.alpha(), 90))
            canvas.setSelectionColor(glow)
        elif not on and getattr(self, "_old_selection_color", None) is not None:
            canvas.setSelectionColor(self._old_selection_color)
            self._old_selection_color = None

    def shutdown(self) -> None:
        """Close the bundles and drop every connection to QGIS (idempotent)."""
        self.close_all()
        self._translucent_selection(False)
        if self._project_connected:
            try:
                self.project.layersWillBeRemoved.disconnect(self._layers_will_be_removed)
            except (TypeError, RuntimeError):
                pass
            self._project_connected = False
        self.scatter.dispose()

    def closeEvent(self, event):
        try:
            self.shutdown()
        finally:
            self.closed.emit()
            super().closeEvent(event)
