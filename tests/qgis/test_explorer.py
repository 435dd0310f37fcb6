"""The explorer dock on a bundle: brushes <-> footprint selection, gallery, clusters."""

import numpy as np
import pytest
from qgis.core import QgsFeatureRequest
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QPoint, QPointF, Qt
from qgis.PyQt.QtGui import QMouseEvent, QPolygonF
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QApplication

pytestmark = pytest.mark.qgis


def features(layer):
    """patch_id -> (fid, pc1, pc2, cluster) read through QGIS, not through the plugin."""
    out = {}
    for f in layer.getFeatures(QgsFeatureRequest().setFlags(QgsFeatureRequest.Flag.NoGeometry)):
        out[int(f["patch_id"])] = (f.id(), float(f["pc1"]), float(f["pc2"]),
                                   int(f["cluster"]))
    return out


def quantile_rect(s):
    return (float(np.quantile(s.x, 0.25)), float(np.quantile(s.y, 0.2)),
            float(np.quantile(s.x, 0.7)), float(np.quantile(s.y, 0.85)))


def fids_in_rect(feats, x0, y0, x1, y1):
    return sorted(fid for fid, a, b, _ in feats.values() if x0 <= a <= x1 and y0 <= b <= y1)


def test_brush_rect_selects_expected_footprints(dock):
    s = dock.base
    fp = s.layers.footprints
    feats = features(fp)
    x0, y0, x1, y1 = quantile_rect(s)
    want = fids_in_rect(feats, x0, y0, x1, y1)
    assert 0 < len(want) < s.n
    dock.brush_rect(x0, y0, x1, y1)
    assert sorted(fp.selectedFeatureIds()) == want
    want_pids = sorted(p for p, v in feats.items() if v[0] in set(want))
    assert np.flatnonzero(s.selected).tolist() == want_pids
    hx, hy = dock.scatter.highlight.getData()
    assert sorted(zip(hx.tolist(), hy.tolist(), strict=True)) == sorted(
        (feats[p][1], feats[p][2]) for p in want_pids)
    assert f"{len(want)} of {s.n} selected" in dock.stats.text()
    iou = s.columns[s.score_column][want_pids]
    assert f"{np.nanmean(iou):.3f}" in dock.stats.text()


def test_lasso_selects_points_inside_polygon(dock):
    s = dock.base
    feats = features(s.layers.footprints)
    cx, cy = float(np.median(s.x)), float(np.median(s.y))
    w, h = float(np.ptp(s.x)) / 3, float(np.ptp(s.y)) / 3
    poly = np.array([[cx - w, cy - h], [cx + w, cy - h], [cx, cy], [cx + w, cy + h],
                     [cx - w, cy + h]])
    qp = QPolygonF([QPointF(a, b) for a, b in poly])
    want = sorted(fid for fid, a, b, _ in feats.values()
                  if qp.containsPoint(QPointF(a, b), Qt.FillRule.OddEvenFill))
    assert want
    dock.brush_polygon(poly)
    assert sorted(s.layers.footprints.selectedFeatureIds()) == want


def test_merge_add_and_subtract(dock):
    s = dock.base
    fp = s.layers.footprints
    feats = features(fp)
    xs, ys = np.sort(s.x), np.sort(s.y)
    a = (xs[0] - 1, ys[0] - 1, float(np.quantile(xs, 0.4)), ys[-1] + 1)
    b = (float(np.quantile(xs, 0.6)), ys[0] - 1, xs[-1] + 1, ys[-1] + 1)
    c = (xs[0] - 1, float(np.quantile(ys, 0.5)), xs[-1] + 1, ys[-1] + 1)
    fa, fb, fc = (set(fids_in_rect(feats, *r)) for r in (a, b, c))
    dock.brush_rect(*a)
    assert set(fp.selectedFeatureIds()) == fa
    dock.brush_rect(*b, mode="add")
    assert set(fp.selectedFeatureIds()) == fa | fb
    dock.brush_rect(*c, mode="subtract")
    assert set(fp.selectedFeatureIds()) == (fa | fb) - fc
    assert len((fa | fb) - fc) > 0
    dock.clear_selection()
    assert fp.selectedFeatureIds() == [] and not s.selected.any()
    assert f"0 of {s.n} selected" in dock.stats.text()


def _send(widget, kind, pos, buttons, modifiers):
    button = Qt.MouseButton.LeftButton
    if kind == QEvent.Type.MouseMove:
        button = Qt.MouseButton.NoButton
    ev = QMouseEvent(kind, QPointF(pos), button, buttons, modifiers)
    QApplication.sendEvent(widget, ev)


def drag(dock, pts, modifiers=Qt.KeyboardModifier.NoModifier):
    """A real left-button drag over the scatter's viewport through data points `pts`."""
    view = dock.scatter.view
    vb = dock.scatter.viewbox
    vp = view.viewport()
    screen = [view.mapFromScene(vb.mapViewToScene(QPointF(*p))) for p in pts]
    left = Qt.MouseButton.LeftButton
    _send(vp, QEvent.Type.MouseButtonPress, screen[0], left, modifiers)
    for p in screen[1:]:
        QTest.qWait(15)  # pyqtgraph drops mouse moves closer than 10 ms apart
        _send(vp, QEvent.Type.MouseMove, p, left, modifiers)
    QTest.qWait(15)
    _send(vp, QEvent.Type.MouseButtonRelease, screen[-1], Qt.MouseButton.NoButton, modifiers)
    QTest.qWait(15)


def view_on_bulk(dock):
    """Show the central 90 % of the points; returns (xmin, ymin, xmax, ymax) shown."""
    s = dock.base
    dock.resize(900, 900)
    dock.show()
    xa, xb = np.quantile(s.x, [0.05, 0.95])
    ya, yb = np.quantile(s.y, [0.05, 0.95])
    dock.scatter.plot.setRange(xRange=(xa, xb), yRange=(ya, yb), padding=0.0)
    QCoreApplication.processEvents()
    return float(xa), float(ya), float(xb), float(yb)


def test_mouse_drag_brushes_with_shift_adding(dock):
    s = dock.base
    vx0, vy0, vx1, vy1 = view_on_bulk(dock)
    x0, y0, x1, y1 = quantile_rect(s)
    steps = [(x0 + t * (x1 - x0), y0 + t * (y1 - y0)) for t in np.linspace(0, 1, 8)]
    drag(dock, steps)
    feats = features(s.layers.footprints)
    # the drag ends on pixels, so allow points within a pixel of the rectangle's edges
    px, py = dock.scatter.pixel_size()
    inner = set(fids_in_rect(feats, x0 + 2 * px, y0 + 2 * py, x1 - 2 * px, y1 - 2 * py))
    outer = set(fids_in_rect(feats, x0 - 2 * px, y0 - 2 * py, x1 + 2 * px, y1 + 2 * py))
    got = set(s.layers.footprints.selectedFeatureIds())
    assert inner and inner <= got <= outer
    # shift-drag a second, small rectangle around a point outside the first: added to it
    xy = {fid: (a, b) for fid, a, b, _ in feats.values()}
    others = [f for f, (a, b) in sorted(xy.items()) if f not in outer
              and vx0 + 10 * px < a < vx1 - 10 * px and vy0 + 10 * py < b < vy1 - 10 * py]
    assert others, "no point outside the first rectangle is in view"
    a, b = xy[others[0]]
    lo, hi = (a - 4 * px, b - 4 * py), (a + 4 * px, b + 4 * py)
    drag(dock, [lo, ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2), hi],
         Qt.KeyboardModifier.ShiftModifier)
    got2 = set(s.layers.footprints.selectedFeatureIds())
    assert got <= got2 and others[0] in got2
    # lasso tool, ctrl: subtract everything inside a big triangle from a full selection
    dock.brush_rect(-1e12, -1e12, 1e12, 1e12)
    got2 = set(s.layers.footprints.selectedFeatureIds())
    dock.tool_combo.setCurrentText("lasso")
    big = [(vx0, vy0), (vx1, vy0), (vx1, vy1)]
    drag(dock, big + [big[0]], Qt.KeyboardModifier.ControlModifier)
    left = set(s.layers.footprints.selectedFeatureIds())
    removed = got2 - left

    def in_triangle(fid, margin):  # below the diagonal, above the bottom, left of the right
        a, b = xy[fid]
        diag = vy0 + (vy1 - vy0) / (vx1 - vx0) * (a - vx0)
        return (vx0 + margin * px < a < vx1 - margin * px
                and vy0 + margin * py < b < diag - margin * py)

    clearly_in = {f for f in got2 if in_triangle(f, 3)}
    roughly_in = {f for f in got2 if in_triangle(f, -3)}
    assert removed and clearly_in <= removed <= roughly_in


def test_map_selection_highlights_points_without_feedback(dock):
    s = dock.base
    fp = s.layers.footprints
    feats = features(fp)
    clusters, counts = np.unique([v[3] for v in feats.values()], return_counts=True)
    c = int(clusters[np.argmax(counts)])
    fp.selectByExpression(f'"cluster" = {c}')
    want = sorted(p for p, v in feats.items() if v[3] == c)
    assert np.flatnonzero(s.selected).tolist() == want
    hx, _hy = dock.scatter.highlight.getData()
    assert sorted(hx.tolist()) == sorted(feats[p][1] for p in want)
    assert f"{len(want)} of {s.n} selected" in dock.stats.text()
    # selecting by ids (attribute table, select tool) works the same way
    some = [feats[p][0] for p in want[:3]]
    fp.selectByIds(some)
    assert np.flatnonzero(s.selected).tolist() == sorted(want[:3])
    # a brush changes the layer selection exactly once, and nothing echoes back
    emitted = []
    fp.selectionChanged.connect(lambda *a: emitted.append(a))
    x0, y0, x1, y1 = quantile_rect(s)
    dock.brush_rect(x0, y0, x1, y1)
    assert len(emitted) == 1
    assert sorted(fp.selectedFeatureIds()) == fids_in_rect(feats, x0, y0, x1, y1)


def test_gallery_shows_selection_and_zooms_map(dock, qgis_canvas):
    s = dock.base
    x0, y0, x1, y1 = quantile_rect(s)
    dock.brush_rect(x0, y0, x1, y1)
    ids = np.flatnonzero(s.selected).tolist()
    g = dock.gallery
    assert [p for _, p in g.shown()] == ids[:g.page_size]
    assert g.n_pages() == -(-len(ids) // g.page_size)
    if g.n_pages() > 1:
        g.next.click()
        assert [p for _, p in g.shown()] == ids[g.page_size:2 * g.page_size]
        g.show_page(0)
    row = g.rows[0]
    assert len(row.findChildren(type(row.caption))) >= 3 + 1  # thumbnails and caption
    assert f"#{ids[0]}" in row.caption.text()
    if s.has_labels and np.isfinite(s.columns["iou"][ids[0]]):
        assert f"IoU {s.columns['iou'][ids[0]]:.2f}" in row.caption.text()
    def third_image():
        labels = [w for w in g.rows[0].findChildren(type(g.rows[0].caption))
                  if w.pixmap() is not None and not w.pixmap().isNull()]
        return labels[-1].pixmap().toImage()

    before = third_image()
    g.errors.setChecked(True)
    assert [p for _, p in g.shown()] == ids[:g.page_size]
    if s.bundle.has_array("thumbs_label"):
        assert third_image() != before  # errors drawn on the image instead of the mask
    dock.show()
    QTest.mouseClick(g.rows[0], Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
                     QPoint(5, 5))
    fid = int(s.link.fid_of[ids[0]])
    bbox = s.layers.footprints.getFeature(fid).geometry().boundingBox()
    ext = qgis_canvas.extent()
    assert ext.contains(bbox)
    assert ext.width() < 10 * bbox.width() or ext.height() < 10 * bbox.height()


def test_cluster_panel_selects_cluster_and_shows_representatives(dock):
    s = dock.base
    panel = dock.clusters
    table = s.bundle.clusters()
    assert panel.table.rowCount() == len(table["cluster"])
    dock.show()
    row = 0
    c = panel.cluster_at(row)
    rect = panel.table.visualItemRect(panel.table.item(row, 1))
    QTest.mouseClick(panel.table.viewport(), Qt.MouseButton.LeftButton,
                     Qt.KeyboardModifier.NoModifier, rect.center())
    feats = features(s.layers.footprints)
    want = sorted(fid for fid, _a, _b, cl in feats.values() if cl == c)
    assert sorted(s.layers.footprints.selectedFeatureIds()) == want
    reps = panel.reps[c]
    assert reps and [p for _, p in dock.gallery.shown()] == reps[:dock.gallery.page_size]
    assert f"{len(want)} patches" in dock.gallery.title.text()


def test_colour_modes_heatmap_axes_and_tooltip(dock):
    s = dock.base
    combo = dock.color_combo
    choices = [combo.itemText(i) for i in range(combo.count())]
    assert {"IoU", "estimated IoU", "cluster", "region"} <= set(choices)
    assert combo.currentText() == "IoU"
    assert dock.scatter.point_bar.isVisible() or not dock.isVisible()
    dock.set_color_by("cluster")
    assert len(dock.scatter.legend.items) == len(set(s.columns["cluster"].tolist()))
    dock.set_color_by("region")
    assert len(dock.scatter.legend.items) == len(set(s.columns["region"].tolist()))
    base = dock.scatter.base
    regions = s.columns["region"]
    color_of = {}
    for r in set(regions.tolist()):
        idx = np.flatnonzero(regions == r)
        names = {base.palette[c].name() for c in base.codes[idx]}
        assert len(names) == 1
        color_of[r] = names.pop()
    assert len(set(color_of.values())) == len(color_of)
    dock.set_color_by("IoU")
    iou = s.columns["iou"]
    lo, hi = int(np.nanargmin(iou)), int(np.nanargmax(iou))
    low_c, high_c = base.palette[base.codes[lo]], base.palette[base.codes[hi]]
    assert low_c.hue() < 20  # red for failures
    if iou[hi] - iou[lo] > 0.1:
        assert high_c.hue() > low_c.hue()  # towards yellow / green for better patches
    with pytest.raises(ValueError, match="colour by"):
        dock.set_color_by("shoe size")
    # axes carry the explained variance
    evr = s.explained_variance()
    label = dock.scatter.plot.getAxis("bottom").labelText
    assert label.startswith("PC1") and f"{evr[0] * 100:.1f} %" in label
    # heatmap behind the points at the manifest extent, opacity from the slider
    grid, extent = s.bundle.heatmap()
    img = dock.scatter.heat
    assert img.image.shape == grid.T.shape
    br = img.mapRectToParent(img.boundingRect())
    assert br.left() == pytest.approx(extent[0]) and br.right() == pytest.approx(extent[1])
    assert br.top() == pytest.approx(extent[2]) and br.bottom() == pytest.approx(extent[3])
    assert img.zValue() < dock.scatter.base.zValue()
    dock.opacity.setValue(25)
    assert img.opacity() == pytest.approx(0.25)
    # hover tooltip of the nearest point
    i = int(np.argmax(s.x))
    text = dock.tooltip_at(float(s.x[i]), float(s.y[i]), 1e-3, 1e-3)
    assert text.splitlines()[0].startswith(f"patch {i} ")
    for part in (f"image: {s.columns['image'][i]}", f"region: {s.columns['region'][i]}",
                 "IoU: ", "estimated IoU: ", f"cluster: {int(s.columns['cluster'][i])}"):
        assert part in text
    assert dock.tooltip_at(float(s.x.max()) + 1e6, 0.0, 1e-3, 1e-3) is None


def test_hover_clear_and_zoom_buttons(dock, qgis_canvas):
    s = dock.base
    vx0, vy0, vx1, vy1 = view_on_bulk(dock)
    # a real mouse move over a point shows its tooltip
    shown = np.flatnonzero((s.x > vx0) & (s.x < vx1) & (s.y > vy0) & (s.y < vy1))
    i = int(shown[np.argmax(s.x[shown])])
    view, vb = dock.scatter.view, dock.scatter.viewbox
    pos = view.mapFromScene(vb.mapViewToScene(QPointF(float(s.x[i]), float(s.y[i]))))
    QTest.qWait(15)
    _send(view.viewport(), QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton,
          Qt.KeyboardModifier.NoModifier)
    QTest.qWait(15)
    assert view.toolTip().splitlines()[0].startswith(f"patch {i} ")
    # zoom to selection: the map shows every selected footprint
    x0, y0, x1, y1 = quantile_rect(s)
    dock.brush_rect(x0, y0, x1, y1)
    fp = s.layers.footprints
    qgis_canvas.setDestinationCrs(fp.crs())
    dock.zoom_button.click()
    assert qgis_canvas.extent().contains(fp.boundingBoxOfSelected())
    # clear: nothing selected in the scatter, the map or the gallery
    dock.clear_button.click()
    assert fp.selectedFeatureIds() == [] and not s.selected.any()
    assert dock.scatter.highlight.getData()[0].size == 0
    assert dock.gallery.shown() == []
