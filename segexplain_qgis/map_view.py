"""What the explorer does to the map canvas: zoom to patches, flash one, glow the selection."""

from __future__ import annotations

from collections.abc import Sequence

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtGui import QColor


def _to_canvas(rect: QgsRectangle, layer: QgsVectorLayer, canvas: QgsMapCanvas,
               project: QgsProject) -> QgsRectangle:
    return QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(),
                                  project).transformBoundingBox(rect)


def zoom_to_selected(canvas: QgsMapCanvas, layers: Sequence[QgsVectorLayer],
                     project: QgsProject) -> None:
    """Zoom to the selected features of every layer (nothing to do without layers)."""
    if len(layers) == 1:
        canvas.zoomToSelected(layers[0])
    elif layers:
        rect = None
        for lyr in layers:
            r = _to_canvas(lyr.boundingBoxOfSelected(), lyr, canvas, project)
            if rect is None:
                rect = r
            else:
                rect.combineExtentWith(r)
        if rect is not None:
            canvas.setExtent(rect)
    canvas.refresh()


def zoom_to_features(canvas: QgsMapCanvas, layer: QgsVectorLayer, fids: Sequence[int],
                     project: QgsProject, scale: float = 1.2) -> None:
    """Zoom to some features of a layer, their extent enlarged `scale` times."""
    rect = None
    for feat in layer.getFeatures(list(fids)):
        r = feat.geometry().boundingBox()
        if rect is None:
            rect = r
        else:
            rect.combineExtentWith(r)
    if rect is None:
        return
    rect = _to_canvas(rect, layer, canvas, project)
    rect.scale(scale)
    canvas.setExtent(rect)
    canvas.refresh()


class SelectionGlow:
    """Selected features glow instead of hiding the imagery; `off` restores the colour.

    QGIS fills selected polygons with the canvas selection colour, opaque yellow by
    default, which would hide exactly the patches the user wants to look at.
    """

    def __init__(self, canvas: QgsMapCanvas | None) -> None:
        self.canvas = canvas
        self._old: QColor | None = None

    def on(self) -> None:
        """Make the selection colour translucent (idempotent)."""
        if self.canvas is None or self._old is not None:
            return
        self._old = QColor(self.canvas.selectionColor())
        glow = QColor(self._old)
        glow.setAlpha(min(glow.alpha(), 90))
        self.canvas.setSelectionColor(glow)

    def off(self) -> None:
        """Restore the selection colour of before `on` (idempotent)."""
        if self.canvas is not None and self._old is not None:
            self.canvas.setSelectionColor(self._old)
            self._old = None
