"""The selection on the map where footprints are too small to draw: one image of marks.

Footprint layers are drawn only where a patch spans a few pixels (`layers`), so a
selection of a million patches never makes QGIS re-draw a million polygons. Zoomed
out, this canvas item shows the selected patches instead: their centres binned into
cells of a few pixels, tinted in the canvas selection colour with a dark outline
(`density.marks_rgba`). It costs one numpy pass over the selected patches per view and
selection, and nothing while the footprints are drawn. Patch centres come from the
patches columns (window offsets and sizes) and the images' transforms in the manifest,
read once, when first needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from qgis.core import QgsVectorLayer
from qgis.gui import QgsMapCanvas, QgsMapCanvasItem
from qgis.PyQt.QtCore import QPointF
from qgis.PyQt.QtGui import QColor, QImage, QPainter

from ..core.bundle.reader import Bundle, read_table
from .density import cell_index, marks_rgba, premultiplied_bgra
from .selection import Selection

#: Side of a cell of the overview in screen pixels.
CELL_PX = 2


def patch_centres(bundle: Bundle, image_of: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (x, y) of every patch in the images' CRS; NaN without an image transform.

    `image_of`: the image name of each patch (the patches column "image").
    """
    cols = read_table(bundle.path, "patches", ["row_off", "col_off", "height", "width"])
    col = np.asarray(cols["col_off"], float) + np.asarray(cols["width"], float) / 2
    row = np.asarray(cols["row_off"], float) + np.asarray(cols["height"], float) / 2
    x = np.full(col.shape, np.nan)
    y = np.full(col.shape, np.nan)
    names = np.asarray(image_of).astype(str)
    for im in bundle.manifest.get("images", []):
        t = im.get("transform")
        if not t or len(t) < 6:
            continue
        a, b, c, d, e, f = (float(v) for v in t[:6])
        sel = names == str(im.get("name"))
        x[sel] = c + a * col[sel] + b * row[sel]
        y[sel] = f + d * col[sel] + e * row[sel]
    return x, y


@dataclass
class _Source:
    layer: QgsVectorLayer
    selection: Selection
    centres: Callable[[], tuple[np.ndarray, np.ndarray]]
    unsubscribe: Callable[[], None]
    xy: tuple[np.ndarray, np.ndarray] | None = None
    drawn: bool = field(default=False)


class SelectionOverview(QgsMapCanvasItem):
    """Marks of the selected patches of every open bundle whose footprints are not drawn."""

    def __init__(self, canvas: QgsMapCanvas) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.sources: dict[str, _Source] = {}
        self._picture: tuple[tuple[object, ...], QImage] | None = None
        self._version = 0
        self.setZValue(50)
        canvas.extentsChanged.connect(self._follow)
        self._follow()

    # -- what to show ------------------------------------------------------------------
    def add(self, key: str, layer: QgsVectorLayer, selection: Selection,
            centres: Callable[[], tuple[np.ndarray, np.ndarray]]) -> None:
        """Show the selection of a bundle whose footprints are `layer`."""
        self.remove(key)
        self.sources[key] = _Source(layer, selection, centres,
                                    selection.subscribe(lambda *_: self._changed()))
        self._changed()

    def remove(self, key: str) -> None:
        """Forget a bundle (no error when it is not there)."""
        src = self.sources.pop(key, None)
        if src is not None:
            src.unsubscribe()
            self._changed()

    def drawn(self, key: str) -> bool:
        """Whether the last paint showed this bundle's selection here."""
        src = self.sources.get(key)
        return bool(src is not None and src.drawn)

    def dispose(self) -> None:
        """Forget every bundle, stop following the canvas, leave the scene (idempotent)."""
        for key in list(self.sources):
            self.remove(key)
        try:
            self.canvas.extentsChanged.disconnect(self._follow)
        except (TypeError, RuntimeError):
            pass
        scene = self.scene()
        if scene is not None:
            scene.removeItem(self)

    def _changed(self) -> None:
        self._version += 1
        self.update()

    def _follow(self) -> None:
        self.setRect(self.canvas.extent())
        self.update()

    # -- drawing -----------------------------------------------------------------------
    def wanted(self, src: _Source) -> bool:
        """Whether a bundle's selection is drawn here (footprints hidden, same CRS)."""
        return (src.selection.count > 0 and not src.layer.isInScaleRange(self.canvas.scale())
                and src.layer.crs() == self.canvas.mapSettings().destinationCrs()
                and self.canvas.rotation() == 0)

    def image(self) -> QImage | None:
        """The marks of every wanted selection over the current view (None: nothing)."""
        ext = self.canvas.extent()
        w = max(1, -(-self.canvas.width() // CELL_PX))
        h = max(1, -(-self.canvas.height() // CELL_PX))
        mupp = self.canvas.mapUnitsPerPixel() * CELL_PX
        parts = []
        for src in self.sources.values():
            src.drawn = self.wanted(src)
            if not src.drawn:
                continue
            if src.xy is None:
                src.xy = src.centres()
            ids = src.selection.ids()
            fx = (src.xy[0][ids] - ext.xMinimum()) / mupp
            fy = (ext.yMaximum() - src.xy[1][ids]) / mupp
            parts.append(cell_index(fx, fy, w, h))
        if not parts:
            return None
        glow = QColor(self.canvas.selectionColor())
        buf = premultiplied_bgra(marks_rgba(np.concatenate(parts), w, h, 1, (
            glow.red(), glow.green(), glow.blue(), 200)), CELL_PX)
        return QImage(buf.data, buf.shape[1], buf.shape[0], 4 * buf.shape[1],
                      QImage.Format.Format_ARGB32_Premultiplied).copy()

    def paint(self, painter: QPainter, *_args: object) -> None:
        ext = self.canvas.extent()
        key = (self._version, ext.xMinimum(), ext.yMaximum(), self.canvas.mapUnitsPerPixel(),
               self.canvas.width(), self.canvas.height(), self.canvas.scale())
        if self._picture is None or self._picture[0] != key:
            image = self.image()
            self._picture = (key, image) if image is not None else None
        if self._picture is not None:
            painter.drawImage(QPointF(0, 0), self._picture[1])
