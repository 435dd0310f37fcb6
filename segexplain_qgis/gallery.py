"""Gallery of selected patches: image | ground truth | prediction (or errors), paged.

Thumbnails come from `arrays/thumbs_*.npy`, memory-mapped (read-only, never unpickled)
so a bundle with 100,000 patches costs only the rows shown.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QImage, QPixmap
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from .colors import ERROR_RGB, LABEL_RGB, PREDICTION_RGB, RGB


def qimage_from_rgb(rgb: np.ndarray) -> QImage:
    """Return a deep-copied QImage of an (H, W, 3) uint8 array."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = a.shape[:2]
    return QImage(a.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def mask_rgb(mask: np.ndarray, rgb: RGB) -> np.ndarray:
    """Draw a building mask as an image: colour on black."""
    out = np.zeros((*mask.shape, 3), dtype=np.uint8)
    out[mask.astype(bool)] = rgb
    return out


def error_rgb(image: np.ndarray, label: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Image dimmed, TP / FP / FN painted on top (the map's error colours)."""
    out = (image.astype(np.uint16) * 2 // 5).astype(np.uint8)
    lab, prd = label.astype(bool), pred.astype(bool)
    for code, sel in ((1, lab & prd), (2, ~lab & prd), (3, lab & ~prd)):
        out[sel] = ERROR_RGB[code]
    return out


class Thumbnails:
    """Lazy access to a bundle's thumbnail arrays."""

    def __init__(self, bundle_path: Path) -> None:
        self.dir = Path(bundle_path) / "arrays"
        self._arrays: dict[str, np.ndarray | None] = {}

    def get(self, name: str) -> np.ndarray | None:
        """`thumbs_NAME` memory-mapped, or None when the bundle has none."""
        if name not in self._arrays:
            f = self.dir / f"thumbs_{name}.npy"
            self._arrays[name] = (np.load(f, mmap_mode="r", allow_pickle=False)
                                  if f.is_file() else None)
        return self._arrays[name]


class _Row(QFrame):
    """One patch: thumbnails and a caption; a click asks to zoom the map to it."""

    clicked = pyqtSignal(str, int)

    def __init__(self, key: str, pid: int, pixmaps: list[QPixmap], caption: str,
                 size: int) -> None:
        super().__init__()
        self.key, self.pid = key, pid
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("click: zoom the map to this patch")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        for pm in pixmaps:
            lab = QLabel()
            lab.setPixmap(pm.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                    Qt.TransformationMode.FastTransformation))
            lay.addWidget(lab)
        self.caption = QLabel(caption)
        lay.addWidget(self.caption)
        lay.addStretch(1)

    def mouseReleaseEvent(self, event):
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.key, self.pid)
        super().mouseReleaseEvent(event)


class Gallery(QWidget):
    """Paged rows of (image | ground truth | prediction or errors) for a list of patches."""

    patchClicked = pyqtSignal(str, int)

    def __init__(self, page_size: int = 8, thumb_px: int = 72,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.page_size = page_size
        self.thumb_px = thumb_px
        self.page = 0
        self.items: list[tuple[str, int]] = []       # (bundle key, patch id)
        self.sources: dict[str, tuple[Thumbnails, dict[str, np.ndarray], str]] = {}
        self.title = QLabel("no selection")
        self.errors = QCheckBox("errors instead of prediction")
        self.errors.toggled.connect(lambda _on: self._render())
        self.prev = QPushButton("<")
        self.next = QPushButton(">")
        self.prev.clicked.connect(lambda: self.show_page(self.page - 1))
        self.next.clicked.connect(lambda: self.show_page(self.page + 1))
        self.page_label = QLabel("")
        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(self.errors)
        top.addWidget(self.prev)
        top.addWidget(self.page_label)
        top.addWidget(self.next)
        self.body = QWidget()
        self.body_layout = QVBoxLayout(self.body)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.body)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(top)
        lay.addWidget(scroll, 1)
        self.rows: list[_Row] = []

    def add_source(self, key: str, bundle_path: Path, columns: dict[str, np.ndarray],
                   score_label: str) -> None:
        """Register a bundle whose patches may appear in the gallery."""
        self.sources[key] = (Thumbnails(bundle_path), columns, score_label)

    def remove_source(self, key: str) -> None:
        """Forget a bundle (its rows disappear)."""
        self.sources.pop(key, None)
        self.set_items([it for it in self.items if it[0] != key], self.title.text())

    def set_items(self, items: list[tuple[str, int]], title: str) -> None:
        """Show these patches from the first page."""
        self.items = list(items)
        self.title.setText(title)
        self.page = 0
        self._render()

    def n_pages(self) -> int:
        """Return the number of pages (at least 1)."""
        return max(1, -(-len(self.items) // self.page_size))

    def show_page(self, page: int) -> None:
        """Go to a page (clamped)."""
        self.page = min(max(0, page), self.n_pages() - 1)
        self._render()

    def shown(self) -> list[tuple[str, int]]:
        """(bundle key, patch id) of the rows on the current page."""
        return [(r.key, r.pid) for r in self.rows]

    def _pixmaps(self, key: str, pid: int) -> tuple[list[QPixmap], str]:
        thumbs, cols, score_label = self.sources[key]
        img = thumbs.get("image")
        lab = thumbs.get("label")
        prd = thumbs.get("pred")
        pms = []
        if img is not None:
            pms.append(QPixmap.fromImage(qimage_from_rgb(img[pid])))
        if lab is not None:
            pms.append(QPixmap.fromImage(qimage_from_rgb(mask_rgb(lab[pid], LABEL_RGB))))
        if prd is not None:
            if self.errors.isChecked() and lab is not None and img is not None:
                arr = error_rgb(img[pid], lab[pid], prd[pid])
            else:
                arr = mask_rgb(prd[pid], PREDICTION_RGB)
            pms.append(QPixmap.fromImage(qimage_from_rgb(arr)))
        parts = [f"#{pid}", str(cols["image"][pid])]
        for label, col in (("IoU", "iou"), ("est. IoU", "est_iou")):
            v = cols.get(col)
            if v is not None and np.isfinite(v[pid]):
                parts.append(f"{label} {float(v[pid]):.2f}")
        del score_label
        return pms, "\n".join(parts)

    def _render(self) -> None:
        for r in self.rows:
            self.body_layout.removeWidget(r)
            r.hide()
            r.setParent(None)
            r.deleteLater()
        self.rows = []
        start = self.page * self.page_size
        for key, pid in self.items[start:start + self.page_size]:
            if key not in self.sources:
                continue
            pms, caption = self._pixmaps(key, pid)
            row = _Row(key, pid, pms, caption, self.thumb_px)
            row.clicked.connect(self.patchClicked)
            self.body_layout.insertWidget(self.body_layout.count() - 1, row)
            self.rows.append(row)
        self.page_label.setText(f"{self.page + 1}/{self.n_pages()}")
        self.prev.setEnabled(self.page > 0)
        self.next.setEnabled(self.page < self.n_pages() - 1)
