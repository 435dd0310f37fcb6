"""The latent-plane scatter: points, heatmap, colour scales, brushes, highlight, hover.

A pyqtgraph widget (no QGIS API; pyqtgraph through `.pg`). Points are drawn by
`PointCloudItem`: a palette of a few dozen colours, one palette code per point, one
`QPainter.drawPoints` call per colour (a QPolygonF filled from numpy), so 100,000
points load and re-colour in milliseconds, where pyqtgraph's ScatterPlotItem rebuilds a
style key per point in Python (0.3-0.5 s for 100,000). The selection is a separate
item (a dark halo under the selected points): a brush never re-styles the base points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .pg import QtCore, QtGui, QtWidgets, pg

if TYPE_CHECKING:  # types only; at run time pyqtgraph comes through .pg
    from pyqtgraph import ColorMap

_GraphicsObject: Any = pg.GraphicsObject
_ViewBox: Any = pg.ViewBox

#: Continuous palette (red-yellow-green) sampled into this many shared brushes.
N_BINS = 32
RDYLGN = [(0.0, (215, 48, 39)), (0.25, (252, 141, 89)), (0.5, (254, 224, 139)),
          (0.75, (145, 207, 96)), (1.0, (26, 152, 80))]
CATEGORY_RGB = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232),
    (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148),
    (247, 182, 210), (219, 219, 141), (158, 218, 229), (127, 127, 127), (57, 59, 121),
]
MISSING_RGB = (170, 170, 170)
HEATMAP_STOPS = [(0.0, (250, 250, 250)), (0.5, (158, 202, 225)), (1.0, (33, 113, 181))]


def colormap(stops: list[tuple[float, tuple[int, int, int]]],
             reverse: bool = False) -> ColorMap:
    """Make a pyqtgraph colour map from (position, rgb) stops."""
    pos = np.array([s for s, _ in stops])
    rgb = np.array([c for _, c in stops], dtype=np.ubyte)
    if reverse:
        rgb = rgb[::-1]
    return pg.ColorMap(pos, rgb)


def bin_index(values: np.ndarray, lo: float, hi: float, n_bins: int = N_BINS) -> np.ndarray:
    """Palette index per value in [0, n_bins); n_bins for NaN (the "missing" brush)."""
    v = np.asarray(values, dtype=float)
    span = hi - lo if hi > lo else 1.0
    with np.errstate(invalid="ignore"):
        idx = np.floor((v - lo) / span * n_bins)
    idx = np.clip(np.nan_to_num(idx, nan=0.0), 0, n_bins - 1).astype(np.int64)
    idx[~np.isfinite(v)] = n_bins
    return idx


def continuous_palette(cmap: ColorMap, n_bins: int = N_BINS) -> list[QtGui.QColor]:
    """`n_bins` colours along the colour map plus grey (index n_bins) for missing values."""
    cols = cmap.map((np.arange(n_bins) + 0.5) / n_bins, mode="qcolor")
    return list(cols) + [QtGui.QColor(*MISSING_RGB)]


def category_color(i: int) -> QtGui.QColor:
    """Colour of category `i` (negative: grey)."""
    rgb = MISSING_RGB if i < 0 else CATEGORY_RGB[i % len(CATEGORY_RGB)]
    return QtGui.QColor(*rgb)


def robust_range(v: np.ndarray, q: float = 1.0,
                 spread: float = 3.0) -> tuple[float, float] | None:
    """Return the range to show (None without finite values).

    The full range, or the central (q, 100 - q) percentiles when a few outliers stretch
    the full range more than `spread` times.
    """
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if v.size >= 20:
        a, b = (float(t) for t in np.percentile(v, [q, 100 - q]))
        if b > a and hi - lo > spread * (b - a):
            return a, b
    if hi == lo:
        return lo - 0.5, hi + 0.5
    return lo, hi


class PointCloudItem(_GraphicsObject):
    """Many round (or square) dots, coloured by palette code, drawn per colour in C++.

    `setData(x, y, codes, palette)`: codes index `palette` (a list of QColors); points
    with a non-finite coordinate are skipped. An optional outline colour draws every
    point first slightly larger in that colour.
    """

    def __init__(self, diameter_px: float = 6.0, square: bool = False,
                 outline: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.diameter = float(diameter_px)
        self.square = square
        self.outline = QtGui.QColor(*outline) if outline is not None else None
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.codes = np.zeros(0, dtype=np.int64)
        self.palette: list[QtGui.QColor] = []
        self._groups: list[tuple[QtGui.QColor, object]] = []
        self._all: object = pg.functions.create_qpolygonf(0)
        self._rect = QtCore.QRectF()

    @staticmethod
    def _polygon(x: np.ndarray, y: np.ndarray) -> object:
        poly = pg.functions.create_qpolygonf(x.size)
        if x.size:
            arr = pg.functions.ndarray_from_qpolygonf(poly)
            arr[:, 0] = x
            arr[:, 1] = y
        return poly

    def setData(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray | None = None,  # noqa: N802
                palette: list[QtGui.QColor] | None = None) -> None:
        """Points and their palette codes (default: all code 0)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if codes is None:
            codes = np.zeros(x.size, dtype=np.int64)
        self.prepareGeometryChange()
        self.x, self.y = x, y
        ok = np.isfinite(x) & np.isfinite(y)
        xf, yf = x[ok], y[ok]
        self._all = self._polygon(xf, yf) if self.outline is not None else None
        if xf.size:
            self._rect = QtCore.QRectF(float(xf.min()), float(yf.min()),
                                       float(np.ptp(xf)), float(np.ptp(yf)))
        else:
            self._rect = QtCore.QRectF()
        self.setColors(codes, palette if palette is not None else
                       (self.palette or [QtGui.QColor(20, 20, 20)]))

    def setColors(self, codes: np.ndarray, palette: list[QtGui.QColor]) -> None:  # noqa: N802
        """Re-colour the points (same order as `setData`)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != self.x.shape:
            raise ValueError(f"{codes.size} colour codes for {self.x.size} points")
        self.codes, self.palette = codes, list(palette)
        ok = np.isfinite(self.x) & np.isfinite(self.y)
        idx = np.flatnonzero(ok)
        order = idx[np.argsort(codes[idx], kind="stable")]
        sc = codes[order]
        bounds = np.searchsorted(sc, np.arange(len(self.palette) + 1))
        self._groups = []
        for k, color in enumerate(self.palette):
            sel = order[bounds[k]:bounds[k + 1]]
            if sel.size:
                self._groups.append((color, self._polygon(self.x[sel], self.y[sel])))
        self.update()

    def getData(self) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802 (pyqtgraph style)
        """Return the points (as given)."""
        return self.x, self.y

    def dataBounds(self, ax, frac=1.0, orthoRange=None):  # noqa: N802,N803 (pyqtgraph API)
        v = self.x if ax == 0 else self.y
        v = v[np.isfinite(v)]
        return (float(v.min()), float(v.max())) if v.size else (None, None)

    def pixelPadding(self):  # noqa: N802 (pyqtgraph API)
        return self.diameter

    def boundingRect(self):
        if self._rect.isNull() and not self.x.size:
            return QtCore.QRectF()
        pw = self.pixelWidth() or 0.0
        ph = self.pixelHeight() or 0.0
        pad = self.diameter + 2
        return self._rect.adjusted(-pad * pw, -pad * ph, pad * pw, pad * ph)

    def _pen(self, color: QtGui.QColor, width: float) -> QtGui.QPen:
        pen = QtGui.QPen(color)
        pen.setWidthF(width)
        pen.setCosmetic(True)
        pen.setCapStyle(QtCore.Qt.PenCapStyle.SquareCap if self.square
                        else QtCore.Qt.PenCapStyle.RoundCap)
        return pen

    def paint(self, painter, *_args):
        if self.outline is not None and self._all is not None:
            painter.setPen(self._pen(self.outline, self.diameter + 2.0))
            painter.drawPoints(self._all)
        for color, poly in self._groups:
            painter.setPen(self._pen(color, self.diameter))
            painter.drawPoints(poly)


class BrushViewBox(_ViewBox):
    """A ViewBox whose left-drag draws a rectangle or lasso brush instead of panning.

    Emits `sigBrush(kind, points, mode)`: kind "rect" (2 corners) or "lasso"
    (M vertices) in data coordinates; mode "replace", "add" (shift) or "subtract" (ctrl).
    """

    sigBrush = QtCore.Signal(str, object, str)

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
        # selected points: a dark halo drawn just under the points
        self.highlight = PointCloudItem(diameter_px=10.0)
        self.highlight.setZValue(-1)
        self.plot.addItem(self.highlight, ignoreBounds=True)
        self.point_bar = pg.ColorBarItem(values=(0, 1), colorMap=colormap(RDYLGN),
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
                   palette: list[QtGui.QColor]) -> None:
        """All base points at once, coloured by palette code; the view fits their bulk."""
        self.base.setData(x, y, codes, palette)
        self.fit_view()

    def fit_view(self) -> None:
        """Show the bulk of the base points (a few far outliers may fall outside)."""
        xr, yr = robust_range(self.base.x), robust_range(self.base.y)
        if xr is None or yr is None:
            self.plot.enableAutoRange()
            return
        self.plot.setRange(xRange=xr, yRange=yr, padding=0.05)

    def set_colors(self, codes: np.ndarray, palette: list[QtGui.QColor]) -> None:
        """Re-colour the base points (same order as `set_points`)."""
        self.base.setColors(codes, palette)

    def set_overlay(self, key: str, x: np.ndarray, y: np.ndarray,
                    codes: np.ndarray | None = None,
                    palette: list[QtGui.QColor] | None = None) -> None:
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
        item.setData(x, y, codes, palette or [QtGui.QColor(255, 255, 255)])
        item.show()

    def remove_overlay(self, key: str) -> None:
        """Remove another bundle's points."""
        item = self.overlays.pop(key, None)
        if item is not None:
            item.setData(np.zeros(0), np.zeros(0))
            item.hide()
            self._spare.append(item)

    def set_highlight(self, x: np.ndarray, y: np.ndarray) -> None:
        """Mark the selected points (a halo under them)."""
        self.highlight.setData(x, y)

    def set_continuous_scale(self, label: str, lo: float, hi: float,
                             cmap: ColorMap) -> None:
        """Show the colour bar of a continuous colouring."""
        self.legend.hide()
        self.point_bar.setColorMap(cmap)
        self.point_bar.setLevels((lo, hi))
        self.point_bar.getAxis("left").setLabel(label)
        self.point_bar.show()

    def set_categories(self, entries: list[tuple[str, QtGui.QColor]]) -> None:
        """Show a legend of categories instead of the colour bar."""
        self.point_bar.hide()
        self.legend.clear()
        for name, color in entries[:24]:
            self.legend.addItem(pg.ScatterPlotItem(size=8, brush=pg.mkBrush(color), pen=None),
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
