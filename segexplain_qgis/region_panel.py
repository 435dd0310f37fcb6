"""Region panel: how far a region's numbers can be trusted, from the bundles' manifests.

An estimate bundle carries its region's headline figure (`region_estimate`): the
estimated overall IoU with its 90 % interval, from the patches inside the reference's
coverage, and the share of patches out of it. An analysis bundle carries the
leave-one-region-out comparison of the region methods (`baselines`): each held-out
region's real IoU and every method's estimate and error. The words are those of
`segexplain info` (`core.commands._validity`), so the panel and the command line agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.commands._validity import TITLES, region_lines
from ..core.figures import format_number


def _p(v: object) -> str:
    return format_number(v, percent=True, missing="-")


def headline_text(bundles: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The region figures of every open bundle (name, manifest), one block each."""
    blocks = []
    for name, m in bundles:
        est = m.get("region_estimate")
        if est:
            blocks.append("\n".join([f"{name} (new region):", *region_lines(est)]))
            continue
        region = m.get("region") or {}
        interval = region.get("interval") or {}
        rmse = interval.get("method_rmse")
        if rmse is not None:
            z = float(interval.get("z") or 1.645)
            blocks.append(f"{name} (reference): a new region's IoU estimate (method "
                          f"{region.get('headline', 'gated')}) comes with a 90 % interval of "
                          f"about ± {_p(z * float(rmse))} IoU points, from this reference's "
                          "leave-one-out errors")
    return "\n\n".join(blocks) if blocks else (
        "no region figures: the open bundles predate them; run the analysis or the "
        "estimate again")


def loo_table(baselines: Mapping[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """(headers, rows) of a leave-one-region-out comparison; the last row is the MAE."""
    if not baselines or not baselines.get("rows"):
        return [], []
    unit = str(baselines.get("unit", "region"))
    methods = list(baselines.get("methods") or TITLES)
    headers = [unit, "patches", "real IoU %",
               *(f"{TITLES.get(m, m)} (error)" for m in methods), "covered %"]
    rows = []
    for row in baselines["rows"]:
        est, err = row.get("estimates") or {}, row.get("errors") or {}
        cells = [f"{_p(est.get(m))} ({'+' if (err.get(m) or 0) >= 0 else ''}"
                 f"{_p(err.get(m))})" for m in methods]
        rows.append([str(row.get(unit)), str(row.get("patches", "-")), _p(row.get("real_iou")),
                     *cells, _p(row.get("covered_share"))])
    mae = baselines.get("mae") or {}
    rows.append(["MAE", "", "", *(_p(mae.get(m)) for m in methods), ""])
    return headers, rows


class RegionPanel(QWidget):
    """Headline region figures of the open bundles and the plane's leave-one-out table."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.headline = QPlainTextEdit()
        self.headline.setObjectName("regionHeadline")
        self.headline.setReadOnly(True)
        self.headline.setFrameShape(QFrame.Shape.NoFrame)
        self.table_title = QLabel("")
        self.table_title.setWordWrap(True)
        self.table = QTableWidget(0, 0)
        self.table.setObjectName("leaveOneOut")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        lower = QWidget()
        low = QVBoxLayout(lower)
        low.setContentsMargins(0, 0, 0, 0)
        low.addWidget(self.table_title)
        low.addWidget(self.table, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.headline)
        split.addWidget(lower)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        lay.addWidget(split)
        self.set_bundles([])

    def set_bundles(self, bundles: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        """Show the figures of the open bundles (name, manifest).

        The table is the leave-one-out comparison of the first bundle that has one.
        """
        self.headline.setPlainText(headline_text(bundles) if bundles else "no bundle open")
        name, baselines = next(((n, m["baselines"]) for n, m in bundles
                                if m.get("baselines")), ("", None))
        headers, rows = loo_table(baselines)
        self.table.clear()
        self.table.setColumnCount(len(headers))
        self.table.setRowCount(len(rows))
        self.table.setHorizontalHeaderLabels(headers)
        for r, cells in enumerate(rows):
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight
                                              | Qt.AlignmentFlag.AlignVCenter))
                self.table.setItem(r, c, item)
        self.table.setVisible(bool(rows))
        unit = (baselines or {}).get("unit", "region")
        self.table_title.setText(f"{name}: leave-one-{unit}-out, estimate (error = estimate "
                                 "- real, IoU points)" if rows else "")
        self.table_title.setToolTip(
            f"each {unit} held out in turn, as a new region without labels: its real IoU and "
            "each method's estimate; gated is compared with the real IoU of its covered "
            "patches (the covered share is the last column)" if rows else "")

    def cell(self, row: int, column: int) -> str:
        """Text of a table cell ("" when empty)."""
        item = self.table.item(row, column)
        return item.text() if item is not None else ""
