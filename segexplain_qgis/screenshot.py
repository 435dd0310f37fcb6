"""Headless screenshots of the map and the explorer dock with a selection made.

`make demo` uses `save_screenshot` inside `xvfb-run qgis --code ...` (grabbing the
main window) or offscreen with a bare canvas + dock (composed side by side).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qgis.PyQt.QtCore import QCoreApplication, QEventLoop, QRect
from qgis.PyQt.QtGui import QColor, QPainter, QPixmap
from qgis.PyQt.QtWidgets import QWidget

from .dock import ExplorerDock


def select_low_iou(dock: ExplorerDock, fraction: float = 0.15) -> int:
    """Select the lowest-scoring `fraction` of the base bundle's patches; zoom to them.

    An existing selection is kept. The map shows the image holding most of the
    selected patches. Returns the number of patches selected.
    """
    s = dock.base
    if s is None:
        return 0
    if not s.selected.any():
        score = np.asarray(s.columns.get(s.score_column, np.full(s.n, np.nan)), float)
        ok = np.flatnonzero(np.isfinite(score))
        if ok.size:
            k = max(1, round(fraction * ok.size))
            mask = np.zeros(s.n, dtype=bool)
            mask[ok[np.argsort(score[ok], kind="stable")[:k]]] = True
            dock.select_mask(s, mask)
    ids = np.flatnonzero(s.selected)
    if ids.size:
        images = np.asarray(s.columns["image"], dtype=object)[ids]
        names, counts = np.unique(images.astype(str), return_counts=True)
        top = names[int(np.argmax(counts))]
        dock.zoom_to_patches(s.key, np.flatnonzero(s.columns["image"] == top).tolist())
    return int(s.selected.sum())


def _settle(canvas: QWidget | None, ms: int = 50) -> None:
    QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, ms)
    if canvas is not None and hasattr(canvas, "waitWhileRendering"):
        canvas.refresh()  # not refreshAllLayers: reloading a layer drops its selection
        canvas.waitWhileRendering()
    QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, ms)


def save_screenshot(path: str | Path, dock: ExplorerDock, *, iface=None,
                    main_window: QWidget | None = None, canvas: QWidget | None = None,
                    select: bool = True, size: tuple[int, int] = (1600, 900)) -> Path:
    """Render map + dock (with a selection made when `select`) to a PNG; returns its path.

    With a main window (a real QGIS), the window is grabbed as it is. Otherwise the
    canvas (from `canvas` or `iface.mapCanvas()`) and the dock are resized and grabbed
    side by side.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if canvas is None and iface is not None:
        canvas = iface.mapCanvas()
    if main_window is None and canvas is not None and dock.base is not None \
            and dock.base.layers is not None:
        # a bare canvas does not follow the project CRS as QGIS's own canvas does
        canvas.setDestinationCrs(dock.base.layers.footprints.crs())
    if select:
        select_low_iou(dock)
    if main_window is not None:
        main_window.resize(*size)
        _settle(canvas)
        pm = main_window.grab()
    else:
        w, h = size
        dock_w = max(480, w * 2 // 5)
        dock.setFloating(True)
        dock.resize(dock_w, h)
        dock.show()
        parts: list[QPixmap] = []
        if canvas is not None:
            canvas.resize(w - dock_w, h)
            canvas.show()
            _settle(canvas)
            parts.append(canvas.grab())
        _settle(None)
        parts.append(dock.grab())
        pm = QPixmap(sum(p.width() for p in parts), max(p.height() for p in parts))
        pm.fill(QColor(255, 255, 255))
        painter = QPainter(pm)
        x = 0
        for p in parts:
            painter.drawPixmap(QRect(x, 0, p.width(), p.height()), p)
            x += p.width()
        painter.end()
    if pm.isNull() or not pm.save(str(path), "PNG"):
        raise OSError(f"{path}: could not write the screenshot (empty grab or unwritable "
                      "folder); check the display (QT_QPA_PLATFORM=offscreen or xvfb-run)")
    return path

