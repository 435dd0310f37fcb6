"""Cluster panel: one row per cluster (size, mean / median IoU, region mix)."""

from __future__ import annotations

import json

import numpy as np
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.figures import format_number

HEADERS = ["cluster", "size", "mean IoU", "median IoU", "region mix"]


def region_mix_text(raw: object) -> str:
    """'austin 10, vienna 2' from the JSON object stored in the clusters table."""
    try:
        mix = json.loads(str(raw)) if raw is not None else {}
    except ValueError:
        return str(raw)
    if not isinstance(mix, dict):
        return str(raw)
    return ", ".join(f"{k} {v}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))


def representatives(raw: object) -> list[int]:
    """Patch ids from the JSON list stored in the clusters table."""
    try:
        reps = json.loads(str(raw)) if raw is not None else []
    except ValueError:
        return []
    return [int(r) for r in reps] if isinstance(reps, list) else []


class _NumItem(QTableWidgetItem):
    """A table cell that sorts by number."""

    def __init__(self, value: float, text: str) -> None:
        super().__init__(text)
        self.value = value
        self.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))

    def __lt__(self, other):
        if isinstance(other, _NumItem):
            return self.value < other.value
        return super().__lt__(other)


class ClusterPanel(QWidget):
    """Table of clusters; clicking a row emits `clusterClicked(cluster id)`."""

    clusterClicked = pyqtSignal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(HEADERS))
        self.table.setHorizontalHeaderLabels(HEADERS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            len(HEADERS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.cellClicked.connect(self._clicked)
        self.reps: dict[int, list[int]] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.table)

    def set_clusters(self, table: dict[str, np.ndarray], score_label: str = "IoU") -> None:
        """Fill from the bundle's clusters table."""
        self.table.setSortingEnabled(False)
        self.table.setHorizontalHeaderLabels(
            ["cluster", "size", f"mean {score_label}", f"median {score_label}", "region mix"])
        ids = table.get("cluster", np.array([]))
        self.table.setRowCount(len(ids))
        self.reps = {}
        for r, cid in enumerate(ids):
            c = int(cid)
            size = int(table["size"][r]) if "size" in table else 0
            mean = float(table.get("mean_iou", np.full(len(ids), np.nan))[r])
            med = float(table.get("median_iou", np.full(len(ids), np.nan))[r])
            self.table.setItem(r, 0, _NumItem(c, "noise" if c < 0 else str(c)))
            self.table.setItem(r, 1, _NumItem(size, str(size)))
            for j, v in ((2, mean), (3, med)):
                self.table.setItem(r, j, _NumItem(v if np.isfinite(v) else -1.0,
                                                  format_number(v, missing="-")))
            mix = table["region_mix"][r] if "region_mix" in table else None
            self.table.setItem(r, 4, QTableWidgetItem(region_mix_text(mix)))
            self.reps[c] = representatives(
                table["representatives"][r] if "representatives" in table else None)
        self.table.setSortingEnabled(True)

    def clear(self) -> None:
        """No clusters."""
        self.table.setRowCount(0)
        self.reps = {}

    def cluster_at(self, row: int) -> int:
        """Cluster id shown in a table row."""
        item = self.table.item(row, 0)
        return int(item.value) if isinstance(item, _NumItem) else -1

    def _clicked(self, row: int, _col: int) -> None:
        self.clusterClicked.emit(self.cluster_at(row))
