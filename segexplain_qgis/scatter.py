"""The latent-plane scatter: points, heatmap, colour scales, brushes, highlight, hover.

A pyqtgraph widget (no QGIS API; pyqtgraph through `.pg`). The points of each bundle are
one `PointCloudItem` (palette code per point, see `point_cloud`): dots when the view
holds a few thousand of them, a density image beyond. The selection is separate
(`SelectionMarks`: a dark halo under selected dots, or an outlined tint over a density
image), so a brush never re-draws the base points. Palettes come as RGB tuples from
`colors` / `coloring`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .colors import HEATMAP_STOPS, IOU_STOPS, RGB, Stops
from .pg import QtCore, QtGui, QtWidgets, pg
from .point_cloud import PointCloudItem, SelectionMarks, qcolor

if TYPE_CHECKING:  # types only; at run time pyqtgraph comes through .pg
    from pyqtgraph import ColorMap

_ViewBox: Any = pg.ViewBox


def colormap(stops: Stops) -> ColorMap:
    """Make a pyqtgraph colour map from (position, rgb) stops."""
    pos = np.array([s for s, _ in stops])
    rgb = np.array([c for _, c in stops], dtype=np.ubyte)
    return pg.ColorMap(pos, rgb)


def robust_range(v: np.ndarray, q: float = 1.0, spread: float = 3.0,
                 sample: int = 200_000) -> tuple[float, float] | None:
    """Return the range to show (None without finite values).

    The full range, or the central (q, 100 - q) percentiles when a few outliers stretch
    the full range more than `spread` times (percentiles of every k-th value when there
    are more than `sample`).
    """
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if v.size >= 20:
        part = v[::-(-v.size // sample)]
        a, b = (float(t) for t in np.percentile(part, [q, 100 - q]))
        if b > a and hi - lo > spread * (b - a):
            return a, b
    if hi == lo:
        return lo - 0.5, hi + 0.5
    return lo, hi


class BrushViewBox(_ViewBox):
    """A ViewBox whose left-drag draws a rectangle or lasso brush instead of panning.

    Emits `sigBrush(kind, points, mode)`: kind "rect" (2 corners) or "lasso"
    (M vertices) in data coordinates; mode "replace", "add" (shift) or "subtract" (ctrl).
    A left click (no drag) emits `sigClick(x, y, mode)` in data coordinates.
    """

    sigBrush = QtCore.Signal(str, object, str)
    sigClick = QtCore.Signal(float, float, str)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.tool = "rect"  # "rect", "lasso" or "pan"
        self._path: list[tuple[float, float]] = []
        self._outline = QtWidgets.QGraphicsPathItem()
        pen = QtGui.QPen(QtGui.QColor(20, 20, 20))
        pen.setCosmetic(True)
        pen.setStyle(QtCore.Qt.PenStyle.DashLine)
        self._outline.setPen(pen)
        self._outline.setBrush(QtGui.QBrush(QtGui.QColor(30, 30, 30, 30)))
        self._outline.setZValue(1e9)
        self._outline.hide()
        self.addItem(self._outline, ignoreBounds=True)

    @staticmethod
    def mode_for(modifiers: object) -> str:
        """Return the selection mode for keyboard modifiers (shift adds, ctrl subtracts)."""
        mods = QtCore.Qt.KeyboardModifier
        if modifiers & mods.ShiftModifier:
            return "add"
        if modifiers & mods.ControlModifier:
            return "subtract"
        return "replace"

    def mouseClickEvent(self, ev):  # noqa: N802 (pyqtgraph's override)
        if ev.button() != QtCore.Qt.MouseButton.LeftButton:
            super().mouseClickEvent(ev)
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        self.sigClick.emit(float(p.x()), float(p.y()), self.mode_for(ev.modifiers()))

    def mouseDragEvent(self, ev, axis=None):  # pyqtgraph's override signature
        if self.tool == "pan" or ev.button() != QtCore.Qt.MouseButton.LeftButton:
            super().mouseDragEvent(ev, axis)
            return
        ev.accept()
        p = self.mapSceneToView(ev.scenePos())
        if ev.isStart():
            p0 = self.mapSceneToView(ev.buttonDownScenePos())
            self._path = [(p0.x(), p0.y())]
        self._path.append((p.x(), p.y()))
        path = QtGui.QPainterPath()
        if self.tool == "rect":
            (x0, y0), (x1, y1) = self._path[0], self._path[-1]
            path.addRect(QtCore.QRectF(QtCore.QPointF(x0, y0), QtCore.QPointF(x1, y1)))
        else:
            path.moveTo(*self._path[0])
            for q in self._path[1:]:
                path.lineTo(*q)
            path.closeSubpath()
        self._outline.setPath(path)
        self._outline.show()
        if ev.isFinish():
            self._outline.hide()
            pts = np.array(self._path, dtype=float)
            kind = self.tool
            if kind == "rect":
                pts = pts[[0, -1]]
            self._path = []
            self.sigBrush.emit(kind, pts, self.mode_for(ev.modifiers()))


class LatentScatter(QtWidgets.QWidget):
    """Scatter of the latent plane over the estimated-IoU heatmap, with colour bars."""

    sigBrush = QtCore.Signal(str, object, str)
    sigClick = QtCore.Signal(float, float, str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        self.viewbox = BrushViewBox()
        self.plot = self.view.addPlot(row=0, col=0, viewBox=self.viewbox)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.heat = pg.ImageItem()
        self.heat.setZValue(-10)
        self.heat.setOpacity(0.6)
        self.plot.addItem(self.heat)
        self.base = PointCloudItem(diameter_px=6.0)
        self.base.setZValue(0)
        self.plot.addItem(self.base)
        self.overlays: dict[str, PointCloudItem] = {}
        self._spare: list[PointCloudItem] = []
        # selected points: a dark halo just under the dots, or marks over density images
        self.highlight = SelectionMarks(self.point_items, over=False)
        self.highlight.setZValue(-1)
        self.plot.addItem(self.highlight, ignoreBounds=True)
        self.highlight_over = SelectionMarks(self.point_items, over=True)
        self.highlight_over.setZValue(10)
        self.plot.addItem(self.highlight_over, ignoreBounds=True)
        self.point_bar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(IOU_STOPS),
                                         interactive=False, width=14, label="IoU")
        self.view.addItem(self.point_bar, row=0, col=1)
        self.heat_bar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(HEATMAP_STOPS),
                                        interactive=False, width=14,
                                        label="heatmap: estimated IoU")
        self.view.addItem(self.heat_bar, row=0, col=2)
        self.heat_bar.setImageItem(self.heat)
        self.heat_bar.hide()
        self.legend = pg.LegendItem(offset=(-10, 10), labelTextColor=(20, 20, 20))
        self.legend.setParentItem(self.plot.vb)
        self.legend.hide()
        self.tooltip_provider: Callable[[float, float, float, float], str | None] | None = None
        self.viewbox.sigBrush.connect(self.sigBrush)
        self.viewbox.sigClick.connect(self.sigClick)
        self.view.scene().sigMouseMoved.connect(self._mouse_moved)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.view)

    # -- content ---------------------------------------------------------------------
    def set_axes(self, xlabel: str, ylabel: str) -> None:
        """Axis titles (the explained variance goes here)."""
        self.plot.setLabel("bottom", xlabel)
        self.plot.setLabel("left", ylabel)

    def set_points(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                   palette: Sequence[RGB], hollow: Sequence[int] = ()) -> None:
        """All base points at once, coloured by palette code; the view fits their bulk.

        `hollow`: palette codes drawn as rings (unknown estimates).
        """
        self.base.setData(x, y, codes, palette, hollow)
        self.fit_view()

    def fit_view(self) -> None:
        """Show the bulk of the base points (a few far outliers may fall outside)."""
        xr, yr = robust_range(self.base.x), robust_range(self.base.y)
        if xr is None or yr is None:
            self.plot.enableAutoRange()
            return
        self.plot.setRange(xRange=xr, yRange=yr, padding=0.05)

    def set_colors(self, codes: np.ndarray, palette: Sequence[RGB],
                   hollow: Sequence[int] = ()) -> None:
        """Re-colour the base points (same order as `set_points`)."""
        self.base.setColors(codes, palette, hollow)

    def set_overlay(self, key: str, x: np.ndarray, y: np.ndarray,
                    codes: np.ndarray | None = None,
                    palette: Sequence[RGB] | None = None,
                    hollow: Sequence[int] = ()) -> None:
        """Points of another bundle on the same plane: outlined squares."""
        item = self.overlays.get(key)
        if item is None:
            # reuse a hidden item: taking items out of the scene upsets pyqtgraph 0.13.1
            item = self._spare.pop() if self._spare else None
            if item is None:
                item = PointCloudItem(diameter_px=7.0, square=True, outline=(30, 30, 30))
                item.setZValue(5)
                self.plot.addItem(item)
            self.overlays[key] = item
        item.setData(x, y, codes, palette or [(255, 255, 255)], hollow)
        item.show()

    def remove_overlay(self, key: str) -> None:
        """Remove another bundle's points."""
        item = self.overlays.pop(key, None)
        if item is not None:
            item.setData(np.zeros(0), np.zeros(0))
            item.hide()
            self._spare.append(item)

    def clear(self) -> None:
        """No points, no overlays, no heatmap."""
        for key in list(self.overlays):
            self.remove_overlay(key)
        self.set_points(np.zeros(0), np.zeros(0), np.zeros(0, np.int64), [])
        self.clear_heatmap()

    def point_items(self) -> list[PointCloudItem]:
        """The items of every bundle's points (base first)."""
        return [self.base, *self.overlays.values()]

    def set_highlight(self, x: np.ndarray, y: np.ndarray) -> None:
        """Mark the selected points (halos under dots, marks over density images)."""
        self.highlight.setData(x, y)
        self.highlight_over.setData(x, y)

    def set_continuous_scale(self, label: str, lo: float, hi: float, stops: Stops) -> None:
        """Show the colour bar of a continuous colouring (`stops` over [lo, hi])."""
        self.legend.hide()
        self.point_bar.setColorMap(colormap(stops))
        self.point_bar.setLevels((lo, hi))
        self.point_bar.getAxis("left").setLabel(label)
        self.point_bar.show()

    def set_categories(self, entries: Sequence[tuple[str, RGB]]) -> None:
        """Show a legend of categories instead of the colour bar."""
        self.point_bar.hide()
        self.legend.clear()
        for name, color in entries[:24]:
            self.legend.addItem(pg.ScatterPlotItem(size=8, brush=pg.mkBrush(qcolor(color)),
                                                   pen=None),
                                name)
        self.legend.show()

    def set_heatmap(self, grid: np.ndarray, extent: list[float], lo: float = 0.0,
                    hi: float = 1.0) -> None:
        """Draw the estimator's grid (row 0 = lowest pc2) behind the points."""
        xmin, xmax, ymin, ymax = extent
        self.heat.setImage(np.asarray(grid, dtype=np.float32).T, levels=(lo, hi),
                           autoLevels=False)
        self.heat.setColorMap(colormap(HEATMAP_STOPS))
        self.heat.setRect(QtCore.QRectF(xmin, ymin, xmax - xmin, ymax - ymin))
        self.heat_bar.setLevels((lo, hi))
        self.heat_bar.show()
        self.heat.show()

    def clear_heatmap(self) -> None:
        """No heatmap (the bundle has none)."""
        self.heat.clear()
        self.heat.hide()
        self.heat_bar.hide()

    def set_heatmap_opacity(self, opacity: float) -> None:
        """Heatmap opacity in [0, 1]."""
        self.heat.setOpacity(float(opacity))

    def set_tool(self, tool: str) -> None:
        """"rect", "lasso" or "pan"."""
        if tool not in ("rect", "lasso", "pan"):
            raise ValueError(f"brush tool {tool!r}: expected 'rect', 'lasso' or 'pan'")
        self.viewbox.tool = tool
        self.viewbox.setMouseEnabled(True, True)

    def dispose(self) -> None:
        """Take every item out of the scene before the widget goes (no dangling parents)."""
        self.tooltip_provider = None
        try:
            self.view.scene().sigMouseMoved.disconnect(self._mouse_moved)
        except (TypeError, RuntimeError):
            pass
        for key in list(self.overlays):
            self.remove_overlay(key)

    # -- hover -----------------------------------------------------------------------
    def pixel_size(self) -> tuple[float, float]:
        """Return the data units per screen pixel along x and y."""
        px = self.viewbox.viewPixelSize()
        return float(px[0]) or 1.0, float(px[1]) or 1.0

    def _mouse_moved(self, scene_pos: QtCore.QPointF) -> None:
        if self.tooltip_provider is None or not self.plot.sceneBoundingRect().contains(
                scene_pos):
            return
        p = self.viewbox.mapSceneToView(scene_pos)
        sx, sy = self.pixel_size()
        text = self.tooltip_provider(p.x(), p.y(), sx, sy)
        self.view.setToolTip(text or "")
        if text:
            QtWidgets.QToolTip.showText(QtGui.QCursor.pos(), text, self.view)
        else:
            QtWidgets.QToolTip.hideText()
