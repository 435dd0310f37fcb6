"""Many points on the latent plane, drawn fast: one `QPainter.drawPoints` call per colour.

A pyqtgraph item (no QGIS API; pyqtgraph through `.pg`). Each point has a palette code;
the points of one code are copied into one QPolygonF straight from numpy and drawn in
C++, so 100,000 points load and re-colour in milliseconds, where pyqtgraph's
ScatterPlotItem builds a style per point in Python (0.3-0.5 s for 100,000).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .colors import RGB
from .pg import QtCore, QtGui, pg

_GraphicsObject: Any = pg.GraphicsObject


def qcolor(c: RGB | QtGui.QColor) -> QtGui.QColor:
    """A QColor (pyqtgraph's Qt) of an RGB tuple."""
    return c if isinstance(c, QtGui.QColor) else QtGui.QColor(*c)


class PointCloudItem(_GraphicsObject):
    """Many round (or square) dots, coloured by palette code, drawn per colour in C++.

    `setData(x, y, codes, palette)`: codes index `palette` (RGB tuples, see `colors`);
    points with a non-finite coordinate are skipped. An optional outline colour draws
    every point first slightly larger in that colour.
    """

    def __init__(self, diameter_px: float = 6.0, square: bool = False,
                 outline: RGB | None = None) -> None:
        super().__init__()
        self.diameter = float(diameter_px)
        self.square = square
        self.outline = qcolor(outline) if outline is not None else None
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
                palette: Sequence[RGB] | None = None) -> None:
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
                       (self.palette or [(20, 20, 20)]))

    def setColors(self, codes: np.ndarray, palette: Sequence[RGB]) -> None:  # noqa: N802
        """Re-colour the points (same order as `setData`)."""
        codes = np.asarray(codes, dtype=np.int64)
        if codes.shape != self.x.shape:
            raise ValueError(f"{codes.size} colour codes for {self.x.size} points")
        self.codes, self.palette = codes, [qcolor(c) for c in palette]
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
