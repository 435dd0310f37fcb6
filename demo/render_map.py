"""Render rasters with QGIS (offscreen) to a PNG: the sample data's image with its building mask.

Usage: python demo/render_map.py OUT.png IMAGE.tif [MASK.tif ...]
Runs in a plain Python that sees QGIS's bindings (the project's .venv does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QSize  # noqa: E402
from qgis.PyQt.QtGui import QColor  # noqa: E402


def mask_layer(path: Path, colour: QColor) -> QgsRasterLayer:
    """A 0/1 or 0/255 mask drawn as one translucent colour (background transparent)."""
    layer = QgsRasterLayer(str(path), path.stem)
    if not layer.isValid():
        raise SystemExit(f"{path}: QGIS cannot open this raster")
    classes = [QgsPalettedRasterRenderer.Class(v, colour, "building") for v in (1, 255)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    layer.renderer().setOpacity(0.55)
    return layer


def render(out: Path, image: Path, masks: list[Path], size: int = 1400) -> None:
    """Draw the image and its masks side by side: left image alone, right with masks."""
    base = QgsRasterLayer(str(image), image.stem)
    if not base.isValid():
        raise SystemExit(f"{image}: QGIS cannot open this raster")
    colours = [QColor(0, 230, 255), QColor(255, 210, 0)]
    overlays = [mask_layer(m, colours[i % 2]) for i, m in enumerate(masks)]
    ext: QgsRectangle = base.extent()
    half = QSize(size // 2, int(size // 2 * ext.height() / ext.width()))
    from qgis.PyQt.QtGui import QImage, QPainter

    canvas = QImage(QSize(half.width() * 2 + 10, half.height()), QImage.Format.Format_ARGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    for i, layers in enumerate(([base], [*overlays, base])):
        settings = QgsMapSettings()
        settings.setLayers(layers)
        settings.setDestinationCrs(base.crs())
        settings.setExtent(ext)
        settings.setOutputSize(half)
        settings.setBackgroundColor(QColor("white"))
        job = QgsMapRendererSequentialJob(settings)
        job.start()
        job.waitForFinished()
        painter.drawImage(i * (half.width() + 10), 0, job.renderedImage())
    painter.end()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not canvas.save(str(out)):
        raise SystemExit(f"{out}: could not write the PNG")
    print(f"wrote {out} ({base.crs().authid()}, {ext.width():.0f} x {ext.height():.0f} m)")


def main() -> None:
    """Command-line entry point."""
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    app = QgsApplication([], False)
    app.initQgis()
    try:
        render(Path(sys.argv[1]), Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    finally:
        app.exitQgis()


if __name__ == "__main__":
    main()
