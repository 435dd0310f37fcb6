"""Level of detail on the latent plane: dots or a density image, the same selection."""

import numpy as np
import pytest
from qgis.PyQt.QtCore import QCoreApplication, QPointF
from segexplain.segexplain_qgis.coloring import continuous_palette
from segexplain.segexplain_qgis.colors import IOU_STOPS
from segexplain.segexplain_qgis.scatter import LatentScatter
from test_explorer import drag, features, fids_in_rect, quantile_rect, view_on_bulk

pytestmark = pytest.mark.qgis


def shown(dock):
    """The dock as a window of its own (so it paints), on the bulk of the points."""
    dock.setFloating(True)
    view_on_bulk(dock)
    paint(dock)  # the window takes its final size: the view maps pixels for good
    box = view_on_bulk(dock)
    paint(dock)
    assert dock.isVisible()
    return box


def paint(widget):
    QCoreApplication.processEvents()
    return widget.grab().toImage()


def set_max_points(scatter, n):
    for item in (scatter.base, scatter.highlight, scatter.highlight_over):
        item.max_points = n


def test_same_selection_whether_dots_or_density_are_drawn(dock):
    s = dock.base
    fp = s.layers.footprints
    scatter = dock.scatter
    shown(dock)
    x0, y0, x1, y1 = quantile_rect(s)
    steps = [(x0 + t * (x1 - x0), y0 + t * (y1 - y0)) for t in np.linspace(0, 1, 8)]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    lasso = [(cx, y0), (x1, cy), (cx, y1), (x0, cy), (cx, y0)]
    got = {}
    for mode, max_points in (("points", 10**9), ("density", 1)):
        set_max_points(scatter, max_points)
        dock.tool_combo.setCurrentText("rectangle")
        dock.clear_selection()
        drag(dock, steps)
        rect_sel = (sorted(fp.selectedFeatureIds()), s.selection.ids().tolist())
        paint(scatter.view)
        assert scatter.base.drawn == mode
        # the selection shows: halos under dots, or marks over the density image
        assert scatter.highlight.drawn == ("points" if mode == "points" else "")
        assert scatter.highlight_over.drawn == ("density" if mode == "density" else "")
        dock.tool_combo.setCurrentText("lasso")
        drag(dock, lasso)
        got[mode] = (rect_sel, (sorted(fp.selectedFeatureIds()), s.selection.ids().tolist()))
    assert got["points"] == got["density"]
    # and it is the rectangle the drag covered (within a pixel of its edges)
    feats = features(fp)
    px, py = scatter.pixel_size()
    inner = set(fids_in_rect(feats, x0 + 2 * px, y0 + 2 * py, x1 - 2 * px, y1 - 2 * py))
    outer = set(fids_in_rect(feats, x0 - 2 * px, y0 - 2 * py, x1 + 2 * px, y1 + 2 * py))
    rect_fids = set(got["density"][0][0])
    assert inner and inner <= rect_fids <= outer
    assert 0 < len(got["density"][1][0]) < len(rect_fids)


def test_scatter_draws_density_when_zoomed_out_and_dots_when_zoomed_in(qgis_app):
    rng = np.random.default_rng(0)
    n = 30_000
    x = np.r_[rng.normal(-3, 0.5, n // 2), rng.normal(3, 0.5, n // 2)]
    y = rng.normal(0, 0.5, n)
    codes = np.r_[np.zeros(n // 2, np.int64), np.full(n // 2, 31, np.int64)]
    palette = continuous_palette(IOU_STOPS)
    w = LatentScatter()
    w.resize(700, 500)
    w.show()
    w.set_points(x, y, codes, palette)
    img = paint(w.view)
    assert w.base.drawn == "density" and w.base.visible().size == n

    def colour_at(img, dx, dy):
        p = w.view.mapFromScene(w.viewbox.mapViewToScene(QPointF(dx, dy)))
        c = img.pixelColor(p.x(), p.y())
        return c.red(), c.green(), c.blue()

    # the left blob is drawn in the colour of code 0 (red), the right one in code 31
    r, g, b = colour_at(img, -3, 0)
    assert r > 150 and g < 120
    r, g, b = colour_at(img, 3, 0)
    assert g > r
    # zoomed in on a few hundred points: dots
    w.plot.setRange(xRange=(-3.1, -2.9), yRange=(-0.1, 0.1), padding=0)
    paint(w.view)
    assert w.base.drawn == "points" and 0 < w.base.visible().size <= w.base.max_points
    # a brush on the data selects the same whatever is drawn; the halo follows the mode
    sel = (x > -3.05) & (x < -2.95) & (y > -0.05) & (y < 0.05)
    w.set_highlight(x[sel], y[sel])
    paint(w.view)
    assert w.highlight.drawn == "points" and w.highlight_over.drawn == ""
    w.fit_view()
    paint(w.view)
    assert w.highlight.drawn == "" and w.highlight_over.drawn == "density"
    w.close()
