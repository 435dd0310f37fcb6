"""Explorer dock benchmark (offscreen QGIS): 100,000 and 1,000,000 synthetic patches.

For each size: seconds to open the bundle (session, map layers, scatter drawn once),
to load the scatter + heatmap again, the median milliseconds of one brush (selection,
scatter redraw, footprint layer selection), of a similarity click (a patch and its 10
nearest in latent space selected in the scatter and on the map; the first click also
reads the latent coordinates), the resident memory the open bundle takes,
and what the map canvas does after a selection (seconds until it has redrawn, zoomed
out and zoomed in). The dock sits in a shown main window next to a map canvas with
QGIS's render cache, as in QGIS.

With `--points` above 100,000 a 100,000-point run goes first (`--compare N` picks
another size, `--compare 0` none); each size runs in a fresh child process (so its
memory figures start from the same empty QGIS) and the last line, one JSON object,
carries both runs and the ratios big / small of each figure. Bundles are written once
and cached (bench/bundle_cache.py); the writing time is never part of the explorer's
figures. Goals (issue 13, at 1,000,000): open <= 2 s, scatter + heatmap
<= 1 s, brush <= 50 ms median.

    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/dock.py --points 1000000
    QT_QPA_PLATFORM=offscreen .venv/bin/python bench/dock.py             # 100,000 only
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from qgis.core import QgsApplication  # noqa: E402

APP = QgsApplication([], True)
APP.initQgis()

import numpy as np  # noqa: E402
from bundle_cache import cached_bundle  # noqa: E402
from qgis.core import (  # noqa: E402
    QgsMapRendererSequentialJob,
    QgsMapSettings,
    QgsProject,
    QgsRectangle,
)
from qgis.gui import QgsLayerTreeMapCanvasBridge, QgsMapCanvas, QgsMessageBar  # noqa: E402
from qgis.PyQt.QtCore import QEventLoop, QSize, Qt, QTimer  # noqa: E402
from qgis.PyQt.QtWidgets import QMainWindow  # noqa: E402
from segexplain.segexplain_qgis.coloring import point_colors  # noqa: E402
from segexplain.segexplain_qgis.dock import ExplorerDock  # noqa: E402

GOALS = {"open_bundle_s": 2.0, "scatter_heatmap_load_s": 1.0, "brush_ms": 50.0}


class Iface:
    """The few parts of QgisInterface the dock uses, in a shown main window."""

    def __init__(self) -> None:
        self.main = QMainWindow()
        self.canvas = QgsMapCanvas(self.main)
        self.canvas.setCachingEnabled(True)          # as QGIS sets it by default
        self.canvas.setParallelRenderingEnabled(True)
        self.main.setCentralWidget(self.canvas)
        self.bar = QgsMessageBar()
        self.bridge = QgsLayerTreeMapCanvasBridge(QgsProject.instance().layerTreeRoot(),
                                                  self.canvas)

    def mapCanvas(self):  # noqa: N802
        return self.canvas

    def messageBar(self):  # noqa: N802
        return self.bar

    def mainWindow(self):  # noqa: N802
        return self.main


def rss_mib() -> float:
    """Resident memory of this process now."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def wait_for_map(canvas: QgsMapCanvas, start: float, timeout_s: float = 300.0) -> float:
    """Seconds from `start` until the canvas has finished redrawing (refresh first)."""
    loop = QEventLoop()
    canvas.mapCanvasRefreshed.connect(loop.quit)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    canvas.refresh()
    loop.exec()
    canvas.mapCanvasRefreshed.disconnect(loop.quit)
    return time.perf_counter() - start


def render_all_footprints(layer: Any) -> float:
    """Seconds one render of every footprint takes at full extent, scale limit off."""
    was = layer.hasScaleBasedVisibility()
    layer.setScaleBasedVisibility(False)
    ms = QgsMapSettings()
    ms.setLayers([layer])
    ms.setOutputSize(QSize(1000, 800))
    ms.setDestinationCrs(layer.crs())
    ms.setExtent(layer.extent())
    job = QgsMapRendererSequentialJob(ms)
    t = time.perf_counter()
    job.start()
    job.waitForFinished()
    layer.setScaleBasedVisibility(was)
    return time.perf_counter() - t


def run(points: int, brushes: int, full_render: bool) -> dict[str, Any]:
    """All figures for one bundle size."""
    path, write_s = cached_bundle(points)
    gc.collect()
    iface = Iface()
    dock = ExplorerDock(iface, iface.main)
    iface.main.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    iface.main.resize(1500, 900)
    iface.main.show()
    APP.processEvents()
    rss0 = rss_mib()

    t = time.perf_counter()
    session = dock.open_bundle(path)
    dock.scatter.view.viewport().repaint()
    open_s = time.perf_counter() - t
    rss_open = rss_mib()
    drawn_whole = dock.scatter.base.drawn
    n = session.n
    fp = session.layers.footprints

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
    modes = ["replace", "add", "subtract"]
    rect_ms, lasso_ms, counts = [], [], []
    for i in range(brushes):
        cx = rng.uniform(xs.min(), xs.max() - wx)
        cy = rng.uniform(ys.min(), ys.max() - wy)
        t = time.perf_counter()
        dock.brush_rect(cx, cy, cx + wx, cy + wy, modes[i % 3])
        dock.scatter.view.viewport().repaint()
        rect_ms.append((time.perf_counter() - t) * 1000)
        counts.append(fp.selectedFeatureCount())
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
    rss_brushes = rss_mib()

    # similarity click: a patch and its 10 nearest in latent space, selected everywhere;
    # the first click also reads the bundle's latent coordinates
    sim_ms = []
    for pid in rng.choice(n, 6, replace=False):
        t = time.perf_counter()
        found = dock.select_similar(session.key, int(pid))
        dock.scatter.view.viewport().repaint()
        sim_ms.append((time.perf_counter() - t) * 1000)
        assert len(found) == 11 and fp.selectedFeatureCount() == 11
    rss_similar = rss_mib()

    # zoomed in on the plane: few enough points to draw them as dots
    cx, cy = float(np.median(xs)), float(np.median(ys))
    px, py = np.ptp(xs), np.ptp(ys)
    reach = np.maximum(np.abs(xs - cx) / px, np.abs(ys - cy) / py)
    half = float(np.partition(reach, 2000)[2000])  # about 2,000 points in view
    dock.scatter.plot.setRange(xRange=(cx - half * px, cx + half * px),
                               yRange=(cy - half * py, cy + half * py), padding=0)
    APP.processEvents()
    dock.scatter.view.viewport().repaint()  # axes and grid follow the new range
    t = time.perf_counter()
    dock.scatter.view.viewport().repaint()
    zoomed_ms = (time.perf_counter() - t) * 1000
    drawn_zoomed = dock.scatter.base.drawn
    dock.scatter.fit_view()

    # the map after a selection: whole extent (footprints not drawn), then zoomed in
    canvas = iface.canvas
    canvas.setDestinationCrs(fp.crs())
    canvas.setExtent(fp.extent())
    wait_for_map(canvas, time.perf_counter())
    footprints_drawn_whole = fp.isInScaleRange(canvas.scale())
    cx0, cy0 = float(np.quantile(xs, 0.4)), float(np.quantile(ys, 0.4))
    t = time.perf_counter()
    dock.brush_rect(cx0, cy0, cx0 + wx, cy0 + wy)
    map_whole_s = wait_for_map(canvas, t)
    box = fp.boundingBoxOfSelected()
    c = box.center()
    side = fp.extent().width() * np.sqrt(900 / n)  # about 30 x 30 patches
    canvas.setExtent(QgsRectangle(c.x() - side / 2, c.y() - side / 2, c.x() + side / 2,
                                  c.y() + side / 2))
    wait_for_map(canvas, time.perf_counter())
    footprints_drawn_zoomed = fp.isInScaleRange(canvas.scale())
    t = time.perf_counter()
    dock.brush_rect(cx0, cy0, cx0 + wx * 1.1, cy0 + wy * 1.1)
    map_zoomed_s = wait_for_map(canvas, t)
    all_footprints_s = render_all_footprints(fp) if full_render else None
    rss_end = rss_mib()
    held = session_bytes(dock) / 2**20
    spatial_index = int(fp.hasSpatialIndex())

    dock.shutdown()
    iface.main.removeDockWidget(dock)
    dock.deleteLater()
    iface.main.deleteLater()
    APP.processEvents()
    return {
        "n_points": n, "bundle_cached": write_s is None,
        "bundle_write_s": None if write_s is None else round(write_s, 1),
        "open_bundle_s": round(open_s, 3), "scatter_heatmap_load_s": round(scatter_s, 3),
        "brush_rect_ms_median": round(statistics.median(rect_ms), 1),
        "brush_lasso_ms_median": round(statistics.median(lasso_ms), 1),
        "selected_median": int(statistics.median(counts)),
        "similar_click_ms": {"first": round(sim_ms[0], 1),
                             "median": round(statistics.median(sim_ms[1:]), 1)},
        "scatter_drawn": {"whole": drawn_whole, "zoomed": drawn_zoomed},
        "scatter_zoomed_paint_ms": round(zoomed_ms, 1),
        "map_redraw_after_brush_s": {"whole": round(map_whole_s, 3),
                                     "zoomed": round(map_zoomed_s, 3)},
        "footprints_drawn": {"whole": footprints_drawn_whole,
                             "zoomed": footprints_drawn_zoomed},
        "footprints_spatial_index": spatial_index == 2,
        "all_footprints_render_s": None if all_footprints_s is None
        else round(all_footprints_s, 2),
        "rss_mib": {"before_open": round(rss0), "open": round(rss_open - rss0),
                    "after_brushes": round(rss_brushes - rss0),
                    "after_similar": round(rss_similar - rss0),
                    "after_map_redraws": round(rss_end - rss0)},
        "session_arrays_mib": round(held, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def session_bytes(dock: ExplorerDock) -> int:
    """Bytes of the numpy arrays the open bundle holds (columns, points, selection, links)."""
    seen: set[int] = set()
    total = 0

    def add(a: object) -> None:
        nonlocal total
        if isinstance(a, np.ndarray) and id(a) not in seen:
            seen.add(id(a))
            total += a.nbytes
            if a.dtype == object:  # the str objects (shared ones once)
                total += sum(sys.getsizeof(v) for v in {id(v): v for v in a}.values())

    for s in dock.sessions:
        for v in s.columns.values():
            add(v)
        for a in (s.x, s.y, s.selection.mask, getattr(s.selection, "_y_order", None) or (),
                  s.link.fid_of if s.link is not None else None):
            for b in (a if isinstance(a, tuple) else (a,)):
                add(b)
    base = dock.scatter.base
    for a in (base.x, base.y, base.codes, base._finite):
        add(a)
    return total


def ratios(big: dict[str, Any], small: dict[str, Any]) -> dict[str, float | None]:
    """big / small for every figure that grows with the number of points."""
    out: dict[str, float | None] = {}
    for key in ("n_points", "open_bundle_s", "scatter_heatmap_load_s", "brush_rect_ms_median",
                "brush_lasso_ms_median", "selected_median"):
        a, b = big[key], small[key]
        out[key] = round(a / b, 2) if b else None
    a, b = big["similar_click_ms"]["median"], small["similar_click_ms"]["median"]
    out["similar_click_ms_median"] = round(a / b, 2) if b else None
    a, b = big["rss_mib"]["open"], small["rss_mib"]["open"]
    out["rss_open_mib"] = round(a / b, 2) if b else None
    a, b = big["session_arrays_mib"], small["session_arrays_mib"]
    out["session_arrays_mib"] = round(a / b, 2) if b else None
    return out


def run_child(points: int, brushes: int, full_render: bool) -> dict[str, Any]:
    """`run` in a fresh process: its last output line is the size's JSON."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--single", "--points", str(points),
           "--brushes", str(brushes)] + (["--map-full-render"] if full_render else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--compare", type=int, default=None,
                    help="also run this size first (default 100000 when --points is larger; "
                         "0: none)")
    ap.add_argument("--brushes", type=int, default=40)
    ap.add_argument("--map-full-render", action="store_true",
                    help="also time one render of every footprint at full extent")
    ap.add_argument("--single", action="store_true",
                    help="this size only, in this process (what each child runs)")
    args = ap.parse_args()
    if args.single:
        print(json.dumps(run(args.points, args.brushes, args.map_full_render)))
        return 0
    compare = args.compare if args.compare is not None else (
        100_000 if args.points > 100_000 else 0)
    load_start = [round(v, 2) for v in os.getloadavg()]
    runs = {size: run_child(size, args.brushes, args.map_full_render)
            for size in ([compare] if compare else []) + [args.points]}
    main_run = runs[args.points]
    result: dict[str, Any] = {"bench": "dock", "points": args.points,
                              **{k: v for k, v in main_run.items()}}
    if compare:
        result["compare"] = runs[compare]
        result["ratios_vs_compare"] = ratios(main_run, runs[compare])
    result["goals"] = GOALS
    result["ok"] = bool(main_run["open_bundle_s"] <= GOALS["open_bundle_s"]
                        and main_run["scatter_heatmap_load_s"] <= GOALS["scatter_heatmap_load_s"]
                        and main_run["brush_rect_ms_median"] <= GOALS["brush_ms"]
                        and main_run["brush_lasso_ms_median"] <= GOALS["brush_ms"])
    result["load_avg"] = {"start": load_start,
                          "end": [round(v, 2) for v in os.getloadavg()]}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
