"""Map layers of a bundle: one layer-tree group, every layer styled on load.

Group "segexplain: NAME" holds, top to bottom: the patch footprints (graduated by IoU,
or by estimated IoU where there are no labels; further named styles by cluster and
novelty), the error overlays (confusion raster: TP / FP / FN, TN transparent), the
predictions, the estimated-IoU rasters, the ground truth and the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsClassificationRange,
    QgsColorRampShader,
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
    Stops,
    category_rgb,
    ramp_rgb,
    reversed_stops,
)

#: Label files opened as vector layers (building polygons).
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".kml", ".gml", ".sqlite")

STYLE_IOU = "by IoU"
STYLE_EST = "by estimated IoU"
STYLE_CLUSTER = "by cluster"
STYLE_NOVELTY = "by novelty"


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


def graduated_renderer(field_name: str, lo: float = 0.0, hi: float = 1.0,
                       n: int = 5, stops: Stops | None = None) -> QgsGraduatedSymbolRenderer:
    """Equal-interval ranges over [lo, hi] coloured red (low) to green (high)."""
    stops = stops or IOU_STOPS
    ranges = []
    step = (hi - lo) / n
    for i in range(n):
        a, b = lo + i * step, lo + (i + 1) * step
        ranges.append(QgsRendererRange(QgsClassificationRange(f"{a:.2f} - {b:.2f}", a, b),
                                       _fill(ramp_rgb(stops, (i + 0.5) / n))))
    r = QgsGraduatedSymbolRenderer(field_name, ranges)
    return r


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


def style_footprints(layer: QgsVectorLayer, cols: dict[str, np.ndarray]) -> str:
    """Add the named styles to the footprint layer; returns the style made current.

    `cols` holds at least the patches columns iou, est_iou, cluster, novelty present.
    """
    sm = layer.styleManager()
    has_iou = "iou" in cols and bool(np.isfinite(cols["iou"]).any())
    cl = np.asarray(cols.get("cluster", np.zeros(0)), dtype=float)
    clusters = sorted({int(c) for c in np.unique(cl[np.isfinite(cl)])})
    extra: list[tuple[str, object]] = [(STYLE_CLUSTER, categorized_renderer("cluster",
                                                                          clusters))]
    if has_iou:
        extra.append((STYLE_EST, graduated_renderer("est_iou")))
    if "novelty" in cols and bool(np.isfinite(cols["novelty"]).any()):
        extra.append((STYLE_NOVELTY, graduated_renderer(
            "novelty", 0.0, 100.0, stops=reversed_stops(IOU_STOPS))))
    for name, renderer in extra:
        layer.setRenderer(renderer)
        sm.addStyleFromLayer(name)
    main = STYLE_IOU if has_iou else STYLE_EST
    layer.setRenderer(graduated_renderer("iou" if has_iou else "est_iou"))
    sm.renameStyle(sm.currentStyle(), main)
    return main


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
