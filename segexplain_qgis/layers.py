"""Map layers of a bundle: one layer-tree group, every layer styled on load.

Group "segexplain: NAME" holds, top to bottom: the patch footprints (graduated by IoU,
or by estimated IoU where there are no labels, with patches beyond the reference's
coverage hollow and grey: unknown; further named styles by cluster, novelty and label
disagreement), the error overlays (confusion raster: TP / FP / FN, TN transparent), the
predictions, the estimated-IoU rasters, the ground truth and the images.

The footprints are drawn only at scales where a patch spans at least
`FOOTPRINT_MIN_PX` screen pixels: QGIS re-draws the whole layer in view on every
selection change, and a million polygons seen whole take tens of seconds while each is
a dot. Zoomed in, the GeoPackage's R-tree hands QGIS only the patches in view; zoomed
out, the rasters show the errors and `map_view.SelectionOverview` the selection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsClassificationRange,
    QgsColorRampShader,
    QgsFeatureRequest,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsRendererCategory,
    QgsRendererRange,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.bundle.reader import Bundle
from ..core.errors import BundleError
from .colors import (
    CONFUSION_CLASSES,
    IOU_STOPS,
    LABEL_CLASSES,
    LABEL_OUTLINE_RGB,
    LABEL_RGB,
    PREDICTION_CLASSES,
    RGB,
    RGBA,
    UNKNOWN_RGB,
    Stops,
    category_rgb,
    ramp_rgb,
    reversed_stops,
)
from .coverage import LABEL_ERROR_MAX, UNKNOWN_TEXT, unknown_mask

#: Label files opened as vector layers (building polygons).
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite")

STYLE_IOU = "by IoU"
STYLE_EST = "by estimated IoU"
STYLE_CLUSTER = "by cluster"
STYLE_NOVELTY = "by novelty"
STYLE_LABEL_ERROR = "by label disagreement"
#: What the estimate styles classify an unclaimed estimate as (out of coverage).
UNKNOWN_CLASS = -1.0
#: Footprints are drawn where one patch spans at least this many screen pixels.
FOOTPRINT_MIN_PX = 4.0


def qcolor(rgb: RGB | RGBA) -> QColor:
    """QGIS's QColor of an RGB(A) tuple."""
    return QColor(*rgb)


def _qgs_color(rgb: RGB, alpha: int = 255) -> str:
    """A colour as QGIS symbol properties write it: "r,g,b,a"."""
    return ",".join(str(v) for v in (*rgb, alpha))


def _fill(rgb: RGB) -> QgsFillSymbol:
    sym = QgsFillSymbol.createSimple({"color": _qgs_color(rgb, 70),
                                     "outline_color": _qgs_color(rgb),
                                     "outline_width": "0.6"})
    # QGIS draws selected features in the selection colour at the symbol's opacity: below 1
    # the brushed footprints glow yellow while the imagery under them stays visible.
    sym.setOpacity(0.6)
    return sym


def unknown_symbol() -> QgsFillSymbol:
    """A hollow, dashed grey footprint: an estimate not claimed (beyond the coverage)."""
    sym = QgsFillSymbol.createSimple({"color": "0,0,0,0", "outline_color": _qgs_color(
        UNKNOWN_RGB), "outline_width": "0.5", "outline_style": "dash"})
    sym.setOpacity(0.8)
    return sym


def graduated_renderer(field_name: str, lo: float = 0.0, hi: float = 1.0,
                       n: int = 5, stops: Stops | None = None, top: float | None = None,
                       unknown: bool = False) -> QgsGraduatedSymbolRenderer:
    """Equal-interval ranges over [lo, hi] coloured red (low) to green (high).

    `top`: upper end of the last range (values above `hi` up to it get the end colour).
    `unknown`: patches out of the reference's coverage (`covered` = 0) get the neutral
    `unknown_symbol` instead of a colour (the field must be an estimate).
    """
    stops = stops or IOU_STOPS
    ranges = []
    step = (hi - lo) / n
    for i in range(n):
        a, b = lo + i * step, lo + (i + 1) * step
        b = top if top is not None and i == n - 1 else b
        label = f"{a:.2f} - {b:.2f}" if top is None or i < n - 1 else f">= {a:.2f}"
        ranges.append(QgsRendererRange(QgsClassificationRange(label, a, b),
                                       _fill(ramp_rgb(stops, (i + 0.5) / n))))
    attribute = field_name
    if unknown:
        attribute = f'if("covered" = 0, {UNKNOWN_CLASS}, "{field_name}")'
        ranges.append(QgsRendererRange(QgsClassificationRange(
            UNKNOWN_TEXT, UNKNOWN_CLASS - 0.5, UNKNOWN_CLASS + 0.5), unknown_symbol()))
    return QgsGraduatedSymbolRenderer(attribute, ranges)


def categorized_renderer(field_name: str, values: list[int]) -> QgsCategorizedSymbolRenderer:
    """One colour per integer value (cluster id); -1 is labelled noise."""
    cats = [QgsRendererCategory(v, _fill(category_rgb(v)),
                                "noise" if v < 0 else f"cluster {v}") for v in values]
    return QgsCategorizedSymbolRenderer(field_name, cats)


def paletted_renderer(layer: QgsRasterLayer,
                      classes: dict[int, tuple[str, RGBA]]) -> QgsPalettedRasterRenderer:
    """Paletted renderer for band 1 with the given value -> (label, RGBA) classes."""
    items = [QgsPalettedRasterRenderer.Class(v, qcolor(rgba), label)
             for v, (label, rgba) in classes.items()]
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, items)


def pseudocolor_renderer(layer: QgsRasterLayer, lo: float = 0.0,
                         hi: float = 1.0) -> QgsSingleBandPseudoColorRenderer:
    """Continuous red-yellow-green renderer over [lo, hi] for band 1."""
    ramp = QgsColorRampShader(lo, hi)
    ramp.setColorRampType(QgsColorRampShader.Type.Interpolated)
    ramp.setColorRampItemList([QgsColorRampShader.ColorRampItem(
        lo + t * (hi - lo), qcolor(ramp_rgb(IOU_STOPS, t)), f"{lo + t * (hi - lo):.2f}")
        for t, _ in IOU_STOPS])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    r = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    r.setClassificationMin(lo)
    r.setClassificationMax(hi)
    return r


def distinct_ints(values: np.ndarray) -> list[int]:
    """The distinct finite values of an integer column, ascending (a count, not a sort)."""
    v = np.asarray(values)
    if v.dtype.kind not in "iu":
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)].astype(np.int64)
    if v.size == 0:
        return []
    lo, hi = int(v.min()), int(v.max())
    if hi - lo > 4 * v.size + 1024:  # sparse ids: sort instead
        return np.unique(v).tolist()
    return (np.flatnonzero(np.bincount(v - lo)) + lo).tolist()


def style_footprints(layer: QgsVectorLayer, cols: dict[str, np.ndarray]) -> str:
    """Add the named styles to the footprint layer; returns the style made current.

    `cols` holds at least the patches columns iou, est_iou, cluster, novelty, covered
    and label_error present.
    """
    sm = layer.styleManager()
    has_iou = "iou" in cols and bool(np.isfinite(cols["iou"]).any())
    clusters = distinct_ints(cols.get("cluster", np.zeros(0, np.int64)))
    extra: list[tuple[str, object]] = [(STYLE_CLUSTER, categorized_renderer("cluster",
                                                                          clusters))]
    unknown = bool(unknown_mask(cols, 0).any())
    if has_iou:
        extra.append((STYLE_EST, graduated_renderer("est_iou", unknown=unknown)))
    if "novelty" in cols and bool(np.isfinite(cols["novelty"]).any()):
        extra.append((STYLE_NOVELTY, graduated_renderer(
            "novelty", 0.0, 100.0, stops=reversed_stops(IOU_STOPS))))
    if "label_error" in cols and bool(np.isfinite(cols["label_error"]).any()):
        extra.append((STYLE_LABEL_ERROR, graduated_renderer(
            "label_error", 0.0, LABEL_ERROR_MAX, stops=reversed_stops(IOU_STOPS), top=1.0)))
    for name, renderer in extra:
        layer.setRenderer(renderer)
        sm.addStyleFromLayer(name)
    main = STYLE_IOU if has_iou else STYLE_EST
    layer.setRenderer(graduated_renderer("iou") if has_iou
                      else graduated_renderer("est_iou", unknown=unknown))
    sm.renameStyle(sm.currentStyle(), main)
    return main


def limit_footprint_scale(layer: QgsVectorLayer, min_px: float = FOOTPRINT_MIN_PX,
                          dpi: float = 96.0) -> float:
    """Draw the footprints only where a patch spans `min_px` pixels; returns that scale.

    The scale denominator comes from the first patch's size (0 and no limit for a
    layer without features).
    """
    feat = next(layer.getFeatures(QgsFeatureRequest().setLimit(1)), None)
    if feat is None or not feat.hasGeometry():
        return 0.0
    box = feat.geometry().boundingBox()
    metres = max(box.width(), box.height()) * QgsUnitTypes.fromUnitToUnitFactor(
        layer.crs().mapUnits(), QgsUnitTypes.DistanceUnit.DistanceMeters)
    scale = metres * dpi / (0.0254 * min_px)
    if scale > 0:
        layer.setScaleBasedVisibility(True)
        layer.setMinimumScale(scale)  # QGIS: the most zoomed-out scale still drawn
    return scale


@dataclass
class BundleLayers:
    """The layers one bundle put on the map, and how to take them off again."""

    group_name: str
    footprints: QgsVectorLayer
    rasters: dict[str, QgsMapLayer] = field(default_factory=dict)  # key "image:kind"
    group: QgsLayerTreeGroup | None = None

    def layer_ids(self) -> list[str]:
        """Ids of every layer of the bundle."""
        return [self.footprints.id()] + [lyr.id() for lyr in self.rasters.values()]

    def remove(self, project: QgsProject | None = None) -> None:
        """Remove the layers and the group from the project (idempotent)."""
        project = project or QgsProject.instance()
        ids = [i for i in self.layer_ids() if project.mapLayer(i) is not None]
        if ids:
            project.removeMapLayers(ids)
        root = project.layerTreeRoot()
        if self.group is not None:
            found = root.findGroup(self.group_name)
            if found is not None:
                found.parent().removeChildNode(found)
            self.group = None


def _raster(path: Path, name: str) -> QgsRasterLayer | None:
    if not path.is_file():
        return None
    layer = QgsRasterLayer(str(path), name, "gdal")
    return layer if layer.isValid() else None


def _label_layer(path: Path, name: str) -> QgsMapLayer | None:
    """Ground truth as given to the analysis: a 0/1 or 0/255 raster, or building polygons."""
    if not path.is_file():
        return None
    if path.suffix.lower() in VECTOR_SUFFIXES:
        vl = QgsVectorLayer(str(path), name, "ogr")
        if not vl.isValid():
            return None
        vl.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(
            {"color": _qgs_color(LABEL_RGB, 90), "outline_color": _qgs_color(LABEL_OUTLINE_RGB),
             "outline_width": "0.4"})))
        return vl
    rl = _raster(path, name)
    if rl is not None:
        rl.setRenderer(paletted_renderer(rl, LABEL_CLASSES))
    return rl


def load_bundle_layers(bundle: Bundle, columns: dict[str, np.ndarray] | None = None,
                       project: QgsProject | None = None) -> BundleLayers:
    """Put a bundle's layers on the map in a new top-level group, styled.

    `columns`: the patches columns already read (default: read them all).
    """
    project = project or QgsProject.instance()
    title = bundle.path.name.removesuffix(".segx")
    uri = f"{bundle.gpkg}|layername=patches"
    fp = QgsVectorLayer(uri, f"{title} patches", "ogr")
    if not fp.isValid():
        raise BundleError(f"{bundle.gpkg}: QGIS cannot open layer 'patches'; the bundle "
                          "is damaged: copy it again or run the analysis again")
    style_footprints(fp, columns if columns is not None else bundle.patches)
    limit_footprint_scale(fp)
    out = BundleLayers(group_name=f"segexplain: {title}", footprints=fp)
    images = bundle.manifest.get("images", [])
    order: list[tuple[str, str, QgsMapLayer]] = []
    for im in images:
        name = str(im.get("name"))
        conf = bundle.raster(name, "confusion")
        if conf is not None and (lyr := _raster(conf, f"{name} errors (TP/FP/FN)")):
            lyr.setRenderer(paletted_renderer(lyr, CONFUSION_CLASSES))
            order.append((name, "confusion", lyr))
        pred = bundle.raster(name, "prediction")
        if pred is not None and (lyr := _raster(pred, f"{name} prediction")):
            lyr.setRenderer(paletted_renderer(lyr, PREDICTION_CLASSES))
            order.append((name, "prediction", lyr))
        est = bundle.raster(name, "est_iou")
        if est is not None and (lyr := _raster(est, f"{name} estimated IoU")):
            lyr.setRenderer(pseudocolor_renderer(lyr))
            lyr.setOpacity(0.6)
            order.append((name, "est_iou", lyr))
        if im.get("label") and (lyr := _label_layer(Path(im["label"]),
                                                    f"{name} ground truth")):
            order.append((name, "label", lyr))
        if im.get("path") and (lyr := _raster(Path(im["path"]), f"{name} image")):
            order.append((name, "image", lyr))
    rank = {"confusion": 0, "prediction": 1, "est_iou": 2, "label": 3, "image": 4}
    order.sort(key=lambda t: rank[t[1]])
    if not project.crs().isValid():
        project.setCrs(fp.crs())  # as QGIS does for the first layer of an empty project
    root = project.layerTreeRoot()
    group = root.insertGroup(0, out.group_name)
    out.group = group
    project.addMapLayer(fp, False)
    group.addLayer(fp)
    for name, kind, lyr in order:
        project.addMapLayer(lyr, False)
        node = group.addLayer(lyr)
        if kind in ("prediction", "label") and node is not None:
            node.setItemVisibilityChecked(False)  # errors on, the rest one click away
        out.rasters[f"{name}:{kind}"] = lyr
    return out


def all_layers(bl: BundleLayers) -> list[QgsMapLayer]:
    """Footprints first, then rasters in map order."""
    return [bl.footprints, *bl.rasters.values()]
