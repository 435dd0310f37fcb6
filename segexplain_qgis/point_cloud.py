"""Many points on the latent plane, drawn at the level of detail the view needs.

A pyqtgraph item (no QGIS API; pyqtgraph through `.pg`). Each point has a palette code.
When the view holds at most `max_points` points they are drawn as dots, one
`QPainter.drawPoints` call per colour from numpy in C++; when it holds more (a bundle of
100,000 or 1,000,000 patches seen whole) the item draws one image of them instead
(`density`: cells of a few pixels, mean colour, opacity by count), which costs the same
whatever the number of points and is kept while the view and the colours stay the same.
Which points are drawn never changes which are selected: brushes work on the data.

`SelectionMarks` draws the selected points: a dark halo under their dots while the
points are dots, and a tint with an outline over the density image once they are not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .colors import RGB
from .density import cell_index, density_rgba, marks_rgba, premultiplied_bgra
from .pg import QtCore, QtGui, pg

_GraphicsObject: Any = pg.GraphicsObject

#: Points in view above which an item draws an image instead of dots.
MAX_POINTS = 10_000
#: Side of a density cell in screen pixels.
CELL_PX = 2
#: Cells a selected point's mark reaches beyond its own (a 6 px dot: 3 cells of 2 px).
MARK_SPREAD = 1
#: The centre of a hollow marker (the plot's background).
HOLLOW_CENTRE = QtGui.QColor(255, 255, 255)


def qcolor(c: RGB | QtGui.QColor) -> QtGui.QColor:
    """A QColor (pyqtgraph's Qt) of an RGB tuple."""
    return c if isinstance(c, QtGui.QColor) else QtGui.QColor(*c)


def qimage(rgba: np.ndarray, scale: int) -> tuple[QtGui.QImage, np.ndarray]:
    """(image, its pixels) of an RGBA array, each pixel `scale` x `scale` screen pixels.

    The image uses the array's memory: keep the two together.
    """
    buf = premultiplied_bgra(rgba, scale)
    h, w = buf.shape[:2]
    return QtGui.QImage(buf.data, w, h, 4 * w,
                        QtGui.QImage.Format.Format_ARGB32_Premultiplied), buf


def _polygon(x: np.ndarray, y: np.ndarray) -> object:
    poly = pg.functions.create_qpolygonf(x.size)
    if x.size:
        arr = pg.functions.ndarray_from_qpolygonf(poly)
        arr[:, 0] = x
        arr[:, 1] = y
    return poly


class PointCloudItem(_GraphicsObject):
    """Many round (or square) dots coloured by palette code, or their density image.

    `setData(x, y, codes, palette)`: codes index `palette` (RGB tuples, see `colors`);
    points with a non-finite coordinate are skipped. An optional outline colour draws
    every dot first slightly larger in that colour. `drawn` tells what the last paint
    drew: "points", "density" or "" (nothing yet). Codes in `hollow` are drawn as rings
    (a dot with a white centre); a density image shows them in their colour.
    """

    def __init__(self, diameter_px: float = 6.0, square: bool = False,
                 outline: RGB | None = None, max_points: int = MAX_POINTS,
                 cell_px: int = CELL_PX) -> None:
        super().__init__()
        self.diameter = float(diameter_px)
        self.square = square
        self.outline = qcolor(outline) if outline is not None else None
        self.max_points = int(max_points)
        self.cell_px = int(cell_px)
        self.x = np.zeros(0)
        self.y = np.zeros(0)
        self.codes = np.zeros(0, dtype=np.int64)
        self.palette: list[QtGui.QColor] = []
        self.hollow: frozenset[int] = frozenset()
        self.drawn = ""
        self._finite = np.zeros(0, dtype=bool)
        self._bounds: tuple[float, float, float, float] | None = None
        self._rect = QtCore.QRectF()
        self._version = 0
        self._view: tuple[tuple[object, ...], np.ndarray] | None = None
        self._all: np.ndarray | None = None  # indices of every finite point
        self._picture: tuple[tuple[object, ...], tuple[QtGui.QImage, np.ndarray]] | None = None

    # -- data ------------------------------------------------------------------------
    def setData(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray | None = None,  # noqa: N802
                palette: Sequence[RGB] | None = None, hollow: Sequence[int] = ()) -> None:
        """Points and their palette codes (default: all code 0)."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        if codes is None:
            codes = np.zeros(x.size, dtype=np.int64)
        self.prepareGeometryChange()
        self.x, self.y = x, y
        self._all = None
        self._finite = np.isfinite(x) & np.isfinite(y)
        if self._finite.any():
            xf, yf = x[self._finite], y[self._finite]
            self._bounds = (float(xf.min()), float(xf.max()), float(yf.min()), float(yf.max()))
            x0, x1, y0, y1 = self._bounds
            self._rect = QtCore.QRectF(x0, y0, x1 - x0, y1 - y0)
        else:
            self._bounds = None
            self._rect = QtCore.QRectF()
        self.setColors(codes, palette if palette is not None else
                       (self.palette or [(20, 20, 20)]), hollow)

    def setColors(self, codes: np.ndarray, palette: Sequence[RGB],  # noqa: N802
                  hollow: Sequence[int] = ()) -> None:
        """Re-colour the points (same order as `setData`); `hollow` codes drawn as rings."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != self.x.shape:
            raise ValueError(f"{codes.size} colour codes for {self.x.size} points")
        self.codes, self.palette = codes, [qcolor(c) for c in palette]
        self.hollow = frozenset(int(k) for k in hollow)
        self._rgb = np.array([c.getRgb()[:3] for c in self.palette] or [(0, 0, 0)],
                             dtype=np.float64)
        self._version += 1
        self._picture = None
        self.update()

    def getData(self) -> tuple[np.ndarray, np.ndarray]:  # noqa: N802 (pyqtgraph style)
        """Return the points (as given)."""
        return self.x, self.y

    # -- pyqtgraph geometry ----------------------------------------------------------
    def dataBounds(self, ax, frac=1.0, orthoRange=None):  # noqa: N802,N803 (pyqtgraph API)
        if self._bounds is None:
            return (None, None)
        return self._bounds[:2] if ax == 0 else self._bounds[2:]

    def pixelPadding(self):  # noqa: N802 (pyqtgraph API)
        return self.diameter

    def boundingRect(self):
        if self._rect.isNull() and not self.x.size:
            return QtCore.QRectF()
        pw = self.pixelWidth() or 0.0
        ph = self.pixelHeight() or 0.0
        pad = self.diameter + 2
        return self._rect.adjusted(-pad * pw, -pad * ph, pad * pw, pad * ph)

    # -- level of detail -------------------------------------------------------------
    def visible(self, rect: QtCore.QRectF | None = None) -> np.ndarray:
        """Indices of the finite points inside `rect` (default: the view), ascending."""
        rect = rect if rect is not None else self.viewRect()
        if rect is None:
            return np.flatnonzero(self._finite)
        key = (self._version, len(self.x), rect.left(), rect.top(), rect.right(),
               rect.bottom())
        if self._view is not None and self._view[0] == key:
            return self._view[1]
        b = self._bounds
        if b is not None and rect.left() <= b[0] and b[1] <= rect.right() \
                and rect.top() <= b[2] and b[3] <= rect.bottom():
            idx = self._all if self._all is not None else np.flatnonzero(self._finite)
            self._all = idx
            self._view = (key, idx)
            return idx
        with np.errstate(invalid="ignore"):
            inside = ((self.x >= rect.left()) & (self.x <= rect.right())
                      & (self.y >= rect.top()) & (self.y <= rect.bottom()))
        idx = np.flatnonzero(inside)
        self._view = (key, idx)
        return idx

    def is_dense(self) -> bool:
        """Whether the view holds more than `max_points` of these points."""
        return self.visible().size > self.max_points

    def _frame(self, painter: QtGui.QPainter) -> tuple[QtGui.QTransform, QtCore.QRectF] | None:
        """(item -> screen transform, the view's screen rectangle) of this paint."""
        tr = painter.worldTransform()
        view = self.viewRect()
        if view is None:
            return None
        dev = painter.device()
        screen = tr.mapRect(view).intersected(QtCore.QRectF(0, 0, dev.width(), dev.height()))
        return (tr, screen) if screen.width() >= 1 and screen.height() >= 1 else None

    def _cells(self, idx: np.ndarray, tr: QtGui.QTransform,
               screen: QtCore.QRectF) -> tuple[np.ndarray, int, int]:
        cell = float(self.cell_px)
        w = int(np.ceil(screen.width() / cell))
        h = int(np.ceil(screen.height() / cell))
        every = idx.size == self.x.size  # all points in view: no copies
        x = self.x if every else self.x[idx]
        y = self.y if every else self.y[idx]
        fx = x * (tr.m11() / cell)
        fy = y * (tr.m22() / cell)
        if tr.m21() or tr.m12():  # never for a ViewBox; kept general
            fx += y * (tr.m21() / cell)
            fy += x * (tr.m12() / cell)
        fx += (tr.dx() - screen.left()) / cell
        fy += (tr.dy() - screen.top()) / cell
        return cell_index(fx, fy, w, h), w, h

    @property
    def spread(self) -> int:
        """Cells a dot reaches beyond its own cell (a dot covers 2 * spread + 1 cells)."""
        return max(0, int(round((self.diameter / self.cell_px - 1) / 2)))

    def _image(self, painter: QtGui.QPainter, idx: np.ndarray,
               make: Callable[[np.ndarray, int, int], np.ndarray]) -> None:
        """Draw `make(cells, w, h)` (an RGBA array) over the view, cached per view."""
        frame = self._frame(painter)
        if frame is None:
            return
        tr, screen = frame
        key = (self._version, len(self.x), tr.m11(), tr.m12(), tr.m21(), tr.m22(), tr.dx(),
               tr.dy(), screen.left(), screen.top(), screen.width(), screen.height())
        if self._picture is None or self._picture[0] != key:
            cells, w, h = self._cells(idx, tr, screen)
            self._picture = (key, qimage(make(cells, w, h), self.cell_px))
        image = self._picture[1][0]
        painter.save()
        painter.resetTransform()
        painter.drawImage(QtCore.QPointF(screen.left(), screen.top()), image)
        painter.restore()

    # -- painting --------------------------------------------------------------------
    def _pen(self, color: QtGui.QColor, width: float) -> QtGui.QPen:
        pen = QtGui.QPen(color)
        pen.setWidthF(width)
        pen.setCosmetic(True)
        pen.setCapStyle(QtCore.Qt.PenCapStyle.SquareCap if self.square
                        else QtCore.Qt.PenCapStyle.RoundCap)
        return pen

    def paint_points(self, painter: QtGui.QPainter, idx: np.ndarray) -> None:
        """Dots of the points `idx`, one drawPoints call per colour (outline first).

        Positions are mapped to the screen here and drawn untransformed: Qt draws a
        wide point under a large scale as a streak (it strokes a tiny line in data units).
        """
        tr = painter.worldTransform()
        x, y = self.x[idx], self.y[idx]
        px = tr.m11() * x + tr.m21() * y + tr.dx()
        py = tr.m12() * x + tr.m22() * y + tr.dy()
        painter.save()
        painter.resetTransform()
        if self.outline is not None and idx.size:
            painter.setPen(self._pen(self.outline, self.diameter + 2.0))
            painter.drawPoints(_polygon(px, py))
        order = np.argsort(self.codes[idx], kind="stable")
        bounds = np.searchsorted(self.codes[idx][order], np.arange(len(self.palette) + 1))
        for k, color in enumerate(self.palette):
            sel = order[bounds[k]:bounds[k + 1]]
            if sel.size:
                painter.setPen(self._pen(color, self.diameter))
                painter.drawPoints(_polygon(px[sel], py[sel]))
                if k in self.hollow:  # a ring: the dot with a white centre
                    painter.setPen(self._pen(HOLLOW_CENTRE, max(1.0, self.diameter - 3.0)))
                    painter.drawPoints(_polygon(px[sel], py[sel]))
        painter.restore()
        self.drawn = "points"

    def paint_density(self, painter: QtGui.QPainter, idx: np.ndarray) -> None:
        """The density image of the points `idx` over the view."""
        self._image(painter, idx, lambda cells, w, h: density_rgba(
            cells, self._rgb, self.codes if idx.size == self.x.size else self.codes[idx],
            w, h, self.spread))
        self.drawn = "density"

    def paint(self, painter, *_args):
        idx = self.visible()
        if idx.size == 0:
            self.drawn = ""
        elif idx.size > self.max_points:
            self.paint_density(painter, idx)
        else:
            self.paint_points(painter, idx)


class SelectionMarks(PointCloudItem):
    """The selected points: a halo under the dots, or marks over a density image.

    Two of these share the selection: the `over=False` one (under the points) draws
    halos while every item of `dense_items()` draws dots; the `over=True` one (above
    the points) draws a tinted, outlined region as soon as one of them, or the
    selection itself, is too dense for dots.
    """

    def __init__(self, dense_items: Callable[[], Sequence[PointCloudItem]], over: bool,
                 diameter_px: float = 10.0, max_points: int = MAX_POINTS) -> None:
        super().__init__(diameter_px=diameter_px, max_points=max_points)
        self.dense_items = dense_items
        self.over = over

    def marks_wanted(self) -> bool:
        """Whether the selection is drawn as marks over images (else as halos)."""
        return self.is_dense() or any(it.is_dense() for it in self.dense_items()
                                      if it.isVisible())

    def paint(self, painter, *_args):
        if self.marks_wanted() != self.over:
            self.drawn = ""
            return
        idx = self.visible()
        if idx.size == 0:
            self.drawn = ""
            return
        if not self.over:
            self.paint_points(painter, idx)
            return
        self._image(painter, idx, lambda cells, w, h: marks_rgba(cells, w, h, MARK_SPREAD))
        self.drawn = "density"
