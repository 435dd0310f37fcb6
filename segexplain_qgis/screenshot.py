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

    An existing selection is kept. Returns the number of patches selected.
    """
    s = dock.base
    if s is None:
        return 0
    if not s.selected.any():
        score = np.asarray(s.columns[s.score_column], float)
        ok = np.isfinite(score)
        if ok.any():
            cut = np.quantile(score[ok], fraction)
            dock.select_mask(s, ok & (score <= cut))
    dock.zoom_to_selection()
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

