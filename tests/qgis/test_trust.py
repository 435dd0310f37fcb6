"""How far the numbers hold, in the explorer: unknown estimates, region panel, label
disagreement, similar patches (real QGIS; bundles written by the core's bundle writer)."""

from __future__ import annotations

import inspect

import bundle_factory
import numpy as np
import pytest
from qgis.core import QgsExpressionContextUtils, QgsRenderContext
from segexplain.core.bundle.reader import Bundle, read_table
from segexplain.core.bundle.similarity import SimilarityIndex
from segexplain.core.figures import format_number
from segexplain.segexplain_qgis.coloring import bin_index
from segexplain.segexplain_qgis.colors import UNKNOWN_RGB
from segexplain.segexplain_qgis.coverage import LABEL_ERROR_MAX, REVIEW_MIN, UNKNOWN_TEXT
from segexplain.segexplain_qgis.layers import STYLE_EST, STYLE_LABEL_ERROR
from segexplain.segexplain_qgis.pg import QtCore


@pytest.fixture(scope="module")
def trust_bundles(qgis_app, tmp_path_factory):
    """(analysis, estimate): three labelled regions; a new region with 5 patches out of
    coverage (seed 4)."""
    root = tmp_path_factory.mktemp("trust")
    ref = bundle_factory.write_bundle(root / "ref.segx", n_images=3)
    new = bundle_factory.write_bundle(root / "new.segx", kind="estimate", seed=4,
                                      reference=ref)
    return ref, new


def _open(plugin, *paths):
    """The explorer dock with these bundles open, the first defining the plane."""
    for p in paths:
        plugin.open_bundle(p)
    assert len(plugin.dock.sessions) == len(paths)
    return plugin.dock


def _covered(path) -> np.ndarray:
    return read_table(path, "patches", ["covered"])["covered"]


def _stroke_rgb(layer, fid: int) -> tuple[int, int, int]:
    """Outline colour QGIS's current renderer gives one footprint."""
    renderer = layer.renderer().clone()
    ctx = QgsRenderContext()
    ctx.expressionContext().appendScope(QgsExpressionContextUtils.layerScope(layer))
    renderer.startRender(ctx, layer.fields())
    try:
        feat = next(layer.getFeatures([fid]))
        ctx.expressionContext().setFeature(feat)
        sym = renderer.symbolForFeature(feat, ctx)
        return tuple(sym.symbolLayer(0).strokeColor().getRgb()[:3])
    finally:
        renderer.stopRender(ctx)


def test_estimates_out_of_coverage_read_as_unknown(plugin, trust_bundles):
    _ref, new = trust_bundles
    plugin.open_bundle(new)          # the estimate defines the plane: est. IoU is shown
    dock = plugin.dock
    s = dock.base
    covered = _covered(new)
    unknown = covered == 0
    assert unknown.any() and (~unknown).any()
    assert s.unknown.tolist() == unknown.tolist()
    # scatter: one grey code, drawn hollow, for exactly the unknown patches
    item = dock.scatter.base
    codes = item.codes
    assert set(codes[unknown].tolist()) == {len(item.palette) - 1}
    assert item.palette[-1].getRgb()[:3] == UNKNOWN_RGB
    assert item.hollow == frozenset({len(item.palette) - 1})
    assert not set(codes[~unknown].tolist()) & item.hollow
    # hover
    i, j = int(np.flatnonzero(unknown)[0]), int(np.flatnonzero(~unknown)[0])
    est = s.columns["est_iou"]
    assert f"estimated IoU: {UNKNOWN_TEXT}" in dock.tooltip_at(s.x[i], s.y[i], 1e-3, 1e-3)
    assert f"estimated IoU: {format_number(est[j])}" in dock.tooltip_at(s.x[j], s.y[j],
                                                                         1e-3, 1e-3)
    # selection stats: unknown ones counted, left out of the mean
    pick = np.zeros(s.n, bool)
    pick[np.flatnonzero(unknown)[:2]] = True
    pick[np.flatnonzero(~unknown)[:3]] = True
    dock.select_mask(s, pick)
    text = dock.stats.text()
    want = format_number(float(est[pick & ~unknown].mean()))
    assert f"5 of {s.n} selected, mean estimated IoU {want}" in text
    assert "2 unknown" in text
    dock.select_mask(s, pick & ~unknown)
    assert "unknown" not in dock.stats.text()
    # map: the footprints of unknown patches are hollow grey, the others coloured
    fp = s.layers.footprints
    assert fp.styleManager().currentStyle() == STYLE_EST
    assert "covered" in fp.renderer().classAttribute()
    assert fp.renderer().ranges()[-1].label() == UNKNOWN_TEXT
    assert _stroke_rgb(fp, int(s.link.fid_of[i])) == UNKNOWN_RGB
    assert _stroke_rgb(fp, int(s.link.fid_of[j])) != UNKNOWN_RGB


def test_overlaid_estimate_and_analysis_estimates(plugin, trust_bundles):
    ref, new = trust_bundles
    dock = _open(plugin, ref, new)
    e = dock.sessions[1]
    # the overlay's est. IoU (shown for "IoU": it has no labels) marks its unknown patches
    item = dock.scatter.overlays[e.key]
    unknown = _covered(new) == 0
    assert item.hollow and set(item.codes[unknown].tolist()) <= item.hollow
    # the analysis keeps its real IoU for every patch: nothing left out of its mean
    base = dock.base
    dock.select_mask(base, np.ones(base.n, bool))
    assert base.unknown_selected() == 0
    assert "unknown" not in dock.stats.text().split("|")[0]


def test_region_panel_shows_interval_coverage_and_leave_one_out(plugin, trust_bundles):
    ref, new = trust_bundles
    plugin.open_bundle(ref)
    plugin.open_bundle(new)
    dock = plugin.dock
    panel = dock.region
    assert dock.tabs.indexOf(panel) >= 0
    r = Bundle(new).manifest["region_estimate"]
    lo, hi = r["interval90"]
    text = panel.headline.toPlainText()
    p = lambda v: format_number(v, percent=True)  # noqa: E731
    assert f"region IoU estimate {p(r['iou'])} % (90 % interval {p(lo)}-{p(hi)})" in text
    assert f"out of coverage: {p(r['out_of_coverage_share'])} % of patches" in text
    assert "ref (reference)" in text and "90 % interval" in text
    b = Bundle(ref).manifest["baselines"]
    table = panel.table
    assert table.rowCount() == len(b["rows"]) + 1 and table.isVisibleTo(panel)
    headers = [table.horizontalHeaderItem(c).text() for c in range(table.columnCount())]
    assert headers[:3] == ["region", "patches", "real IoU %"]
    assert "gated (error)" in headers and "ATC (error)" in headers
    g = headers.index("gated (error)")
    for k, row in enumerate(b["rows"]):
        assert panel.cell(k, 0) == row["region"]
        assert panel.cell(k, 2) == p(row["real_iou"])
        assert panel.cell(k, g).startswith(f"{p(row['estimates']['gated'])} (")
        assert p(abs(row["errors"]["gated"])) in panel.cell(k, g)
    assert panel.cell(len(b["rows"]), 0) == "MAE"
    assert panel.cell(len(b["rows"]), g) == p(b["mae"]["gated"])
    # closing the analysis leaves the estimate's figures and no table
    dock.close_session(dock.base)
    assert "new (new region)" in panel.headline.toPlainText()
    assert panel.table.rowCount() == 0 and not panel.table.isVisibleTo(panel)


def test_colour_by_label_disagreement_with_review_hint(plugin, trust_bundles):
    ref, _new = trust_bundles
    plugin.open_bundle(ref)
    dock = plugin.dock
    s = dock.base
    choices = [dock.color_combo.itemText(i) for i in range(dock.color_combo.count())]
    assert "label error" in choices
    dock.set_color_by("label error")
    err = read_table(ref, "patches", ["label_error"])["label_error"]
    assert dock.scatter.base.codes.tolist() == bin_index(err, 0.0, LABEL_ERROR_MAX).tolist()
    bar_label = dock.scatter.point_bar.getAxis("left").labelText
    assert "label disagreement" in bar_label
    # map style with the same meaning; values above the colour range still drawn
    fp = s.layers.footprints
    assert STYLE_LABEL_ERROR in fp.styleManager().styles()
    # hover: the score, and a review hint where it is high enough
    hi, lo = int(np.argmax(err)), int(np.argmin(err))
    assert err[hi] >= REVIEW_MIN > err[lo]
    tip = dock.tooltip_at(s.x[hi], s.y[hi], 1e-3, 1e-3)
    assert f"label disagreement: {format_number(err[hi], percent=True)} % of pixels" in tip
    assert "label review:" in tip
    assert "label review:" not in dock.tooltip_at(s.x[lo], s.y[lo], 1e-3, 1e-3)


def test_review_threshold_is_the_label_review_export_default():
    from segexplain.core.bundle.label_review import export_label_review

    assert inspect.signature(export_label_review).parameters["min_score"].default == REVIEW_MIN


class _Click:
    """A left click at a scene position, as pyqtgraph hands it to a ViewBox."""

    def __init__(self, pos, modifiers=QtCore.Qt.KeyboardModifier.NoModifier):
        self.pos, self.mods, self.accepted = pos, modifiers, False

    def button(self):
        return QtCore.Qt.MouseButton.LeftButton

    def scenePos(self):  # noqa: N802 (pyqtgraph's event API)
        return self.pos

    def modifiers(self):
        return self.mods

    def accept(self):
        self.accepted = True


def _expected(ref, new, bundle: int, pid: int, k: int) -> dict[int, list[int]]:
    near = SimilarityIndex([Bundle(ref), Bundle(new)]).nearest(bundle, pid, k)
    out: dict[int, list[int]] = {0: [], 1: []}
    out[bundle].append(pid)
    for nb in near:
        out[nb.bundle].append(nb.patch_id)
    return {b: sorted(v) for b, v in out.items()}


def test_click_selects_similar_patches_in_scatter_and_map(plugin, trust_bundles):
    ref, new = trust_bundles
    dock = _open(plugin, ref, new)
    a, e = dock.sessions
    dock.show()
    dock.similar_controls.k.setValue(7)
    pid = 5
    vb = dock.scatter.viewbox
    click = _Click(vb.mapViewToScene(QtCore.QPointF(a.x[pid], a.y[pid])))
    vb.mouseClickEvent(click)
    assert click.accepted
    want = _expected(ref, new, 0, pid, 7)
    assert a.selection.ids().tolist() == want[0]
    assert e.selection.ids().tolist() == want[1]
    assert len(want[0]) + len(want[1]) == 8
    # the map follows, and the gallery shows the patch first, then nearest first
    for s, ids in ((a, want[0]), (e, want[1])):
        assert sorted(s.layers.footprints.selectedFeatureIds()) == sorted(
            int(s.link.fid_of[p]) for p in ids)
    shown = dock.gallery.shown()
    assert shown[0] == (a.key, pid) and len(shown) == 8
    assert "most similar" in dock.gallery.title.text()
    # shift-click adds another patch's neighbours to the selection
    before = a.selection.count + e.selection.count
    q = int(np.argmax(e.x))
    vb.mouseClickEvent(_Click(vb.mapViewToScene(QtCore.QPointF(e.x[q], e.y[q])),
                              QtCore.Qt.KeyboardModifier.ShiftModifier))
    assert q in e.selection.ids().tolist()
    assert a.selection.count + e.selection.count > before

    # one footprint selected on the map: it and its 3 nearest
    dock.similar_controls.k.setValue(3)
    dock.clear_selection()
    fp = e.layers.footprints
    fp.selectByIds([int(e.link.fid_of[q])])
    want = _expected(ref, new, 1, q, 3)
    assert a.selection.ids().tolist() == want[0]
    assert e.selection.ids().tolist() == want[1]
    assert sorted(fp.selectedFeatureIds()) == sorted(int(e.link.fid_of[p]) for p in want[1])
    # switched off, a footprint selected on the map is just that
    dock.similar_controls.on_map.setChecked(False)
    fp.selectByIds([int(e.link.fid_of[0])])
    assert e.selection.ids().tolist() == [0]


def test_region_panel_in_the_screenshot(plugin, trust_bundles, qgis_canvas, tmp_path):
    from qgis.PyQt.QtGui import QImage
    from segexplain.segexplain_qgis.screenshot import save_screenshot

    ref, new = trust_bundles
    dock = _open(plugin, ref, new)
    dock.tabs.setCurrentWidget(dock.region)   # as demo/qgis_session.py does
    crs = qgis_canvas.mapSettings().destinationCrs()
    try:
        out = save_screenshot(tmp_path / "region.png", dock, canvas=qgis_canvas,
                              select=False, size=(1000, 600))
    finally:  # the canvas is shared by the session's tests: leave its CRS as it was
        qgis_canvas.setDestinationCrs(crs)
    img = QImage(str(out))
    # the table is drawn in the lower part of the dock (right side): not a blank area
    x0 = img.width() - dock.width()
    colors = {img.pixel(x, y) for x in range(x0, img.width(), 5)
              for y in range(img.height() // 2, img.height(), 5)}
    assert dock.region.isVisible() and len(colors) > 5
