"""What the explorer does to the map canvas: zoom to patches, flash one, show the selection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRectangle, QgsVectorLayer
from qgis.gui import QgsMapCanvas
from qgis.PyQt.QtGui import QColor

from .map_overview import SelectionOverview, patch_centres

if TYPE_CHECKING:  # types only
    from .session import BundleSession


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


def zoom_to_patches(canvas: QgsMapCanvas | None, s: BundleSession, pids: Sequence[int],
                    project: QgsProject, scale: float = 1.2, flash: bool = False) -> None:
    """Zoom to the footprints of some patches of a bundle (and flash them)."""
    if canvas is None or s.layers is None or s.link is None or not len(pids):
        return
    fids = [int(s.link.fid_of[p]) for p in pids]
    zoom_to_features(canvas, s.layers.footprints, fids, project, scale)
    if flash:
        canvas.flashFeatureIds(s.layers.footprints, fids)


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


class MapSelection:
    """What the explorer adds to the canvas for selections: the glow and the overview.

    Footprints show their selection (glowing) where they are drawn; zoomed out, where
    they are not, `map_overview.SelectionOverview` marks the selected patches.
    """

    def __init__(self, canvas: QgsMapCanvas | None) -> None:
        self.canvas = canvas
        self.glow = SelectionGlow(canvas)
        self.overview = SelectionOverview(canvas) if canvas is not None else None

    def show(self, s: BundleSession) -> None:
        """Show a bundle's selection on the map (its footprints and the overview)."""
        self.glow.on()
        if self.overview is None or self.canvas is None or s.layers is None:
            return
        if self.overview.scene() is None:
            self.canvas.scene().addItem(self.overview)
        bundle, images = s.bundle, s.columns["image"]
        self.overview.add(s.key, s.layers.footprints, s.selection,
                          lambda: patch_centres(bundle, images))

    def hide(self, key: str) -> None:
        """Stop showing a bundle's selection."""
        if self.overview is not None:
            self.overview.remove(key)

    def off(self) -> None:
        """Restore the selection colour and take the overview off the canvas (idempotent)."""
        self.glow.off()
        if self.overview is not None:
            self.overview.dispose()
