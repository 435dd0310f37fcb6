"""Explorer dock benchmark (offscreen): 100,000 synthetic patches.

Measures the seconds to open the bundle and to load the scatter + heatmap, and the
median milliseconds of one brush update (selection + highlight redraw + footprint
layer selection). Last line: one JSON object. Goals: scatter + heatmap load <= 1.0 s,
brush <= 50 ms median.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/dock.py [--points 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "qgis"))

from qgis.core import QgsApplication  # noqa: E402

APP = QgsApplication([], True)
APP.initQgis()

import bundle_factory  # noqa: E402
import numpy as np  # noqa: E402
from qgis.gui import QgsMapCanvas, QgsMessageBar  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402
from segexplain.core.bundle.reader import Bundle  # noqa: E402
from segexplain.segexplain_qgis.coloring import point_colors  # noqa: E402
from segexplain.segexplain_qgis.dock import ExplorerDock  # noqa: E402


class Iface:
    """The few parts of QgisInterface the dock uses."""

    def __init__(self) -> None:
        self.main = QMainWindow()
        self.canvas = QgsMapCanvas(self.main)
        self.bar = QgsMessageBar()

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def mainWindow(self):  # noqa: N802
        return self.main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--brushes", type=int, default=40)
    args = ap.parse_args()
    n_images = 4
    per = max(1, args.points // n_images)
    gx = int(np.ceil(np.sqrt(per)))
    gy = int(np.ceil(per / gx))
    with tempfile.TemporaryDirectory(prefix="segx-bench-") as tmp:
        t = time.perf_counter()
        path = bundle_factory.write_bundle(Path(tmp) / "bench.segx", n_images=n_images,
                                           grid=(gx, gy), patch_px=4, thumb=8,
                                           n_clusters=14, seed=0)
        write_s = time.perf_counter() - t
        n = len(Bundle(path))

        iface = Iface()
        dock = ExplorerDock(iface, iface.main)
        dock.resize(900, 900)
        dock.show()
        APP.processEvents()
        t = time.perf_counter()
        session = dock.open_bundle(path)
        dock.scatter.view.viewport().repaint()
        open_s = time.perf_counter() - t
        # scatter + heatmap alone: the same bundle's points and grid set again
        t = time.perf_counter()
        colors = point_colors(session.columns, session.n, session.score_column)
        dock.scatter.set_points(session.x, session.y, colors.codes, colors.palette)
        grid, extent = session.bundle.heatmap()
        dock.scatter.set_heatmap(grid, extent)
        dock.scatter.view.viewport().repaint()
        scatter_s = time.perf_counter() - t

        rng = np.random.default_rng(1)
        xs, ys = session.x, session.y
        wx, wy = np.ptp(xs) * 0.2, np.ptp(ys) * 0.2
        fp = session.layers.footprints
        modes = ["replace", "add", "subtract"]
        rect_ms, lasso_ms, counts = [], [], []
        for i in range(args.brushes):
            cx = rng.uniform(xs.min(), xs.max() - wx)
            cy = rng.uniform(ys.min(), ys.max() - wy)
            t = time.perf_counter()
            dock.brush_rect(cx, cy, cx + wx, cy + wy, modes[i % 3])
            dock.scatter.view.viewport().repaint()
            rect_ms.append((time.perf_counter() - t) * 1000)
            counts.append(len(fp.selectedFeatureIds()))
            ang = np.linspace(0, 2 * np.pi, 200, endpoint=False)
            r = 1 + 0.3 * np.sin(5 * ang)
            poly = np.c_[cx + wx / 2 + wx / 2 * r * np.cos(ang),
                         cy + wy / 2 + wy / 2 * r * np.sin(ang)]
            t = time.perf_counter()
            dock.brush_polygon(poly, modes[i % 3])
            dock.scatter.view.viewport().repaint()
            lasso_ms.append((time.perf_counter() - t) * 1000)
        assert sorted(fp.selectedFeatureIds()) == sorted(
            int(f) for f in session.link.fid_of[session.selected])
        dock.shutdown()
    result = {
        "bench": "dock", "n_points": n, "bundle_write_s": round(write_s, 2),
        "open_bundle_s": round(open_s, 3), "scatter_heatmap_load_s": round(scatter_s, 3),
        "brush_rect_ms_median": round(statistics.median(rect_ms), 1),
        "brush_lasso_ms_median": round(statistics.median(lasso_ms), 1),
        "selected_median": int(statistics.median(counts)),
        "goal_load_s": 1.0, "goal_brush_ms": 50.0,
    }
    result["ok"] = bool(result["scatter_heatmap_load_s"] <= 1.0
                        and result["brush_rect_ms_median"] <= 50.0
                        and result["brush_lasso_ms_median"] <= 50.0)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
