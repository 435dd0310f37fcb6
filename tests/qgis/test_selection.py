"""Brush geometry (pure numpy), checked against Qt's own polygon containment."""

import numpy as np
import pytest
from qgis.PyQt.QtCore import QPointF, Qt
from qgis.PyQt.QtGui import QPolygonF
from segexplain.segexplain_qgis.brushes import (
    nearest_point,
    points_in_polygon,
    points_in_rect,
    simplify_path,
)
from segexplain.segexplain_qgis.selection import combine, mean_finite


def qt_inside(x, y, poly):
    qp = QPolygonF([QPointF(float(a), float(b)) for a, b in poly])
    return np.array([qp.containsPoint(QPointF(float(a), float(b)), Qt.FillRule.OddEvenFill)
                     for a, b in zip(x, y, strict=True)])


def test_rect_corners_in_any_order_and_nan_never_inside():
    x = np.array([0.0, 1.0, 2.0, np.nan, 1.5])
    y = np.array([0.0, 1.0, 2.0, 1.0, np.nan])
    a = points_in_rect(x, y, 0.5, 0.5, 2.0, 2.0)
    b = points_in_rect(x, y, 2.0, 2.0, 0.5, 0.5)
    assert a.tolist() == [False, True, True, False, False]
    assert (a == b).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_polygon_matches_qt_on_concave_lasso(seed):
    rng = np.random.default_rng(seed)
    # a star-shaped (concave) lasso with 40 vertices
    t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    r = 1.0 + 0.6 * np.sin(5 * t + seed)
    poly = np.c_[r * np.cos(t), r * np.sin(t)]
    x, y = rng.uniform(-2, 2, 3000), rng.uniform(-2, 2, 3000)
    ours = points_in_polygon(x, y, poly)
    theirs = qt_inside(x, y, poly)
    assert 100 < ours.sum() < 2900
    assert (ours == theirs).all()


def test_polygon_degenerate_inputs():
    x = np.array([0.0, 0.5])
    y = np.array([0.0, 0.5])
    assert not points_in_polygon(x, y, np.array([[0, 0], [1, 1]])).any()
    assert not points_in_polygon(np.zeros(0), np.zeros(0), np.eye(3)[:, :2]).any()
    tri = np.array([[0, 0], [2, 0], [0, 2]], float)
    assert points_in_polygon(np.array([0.5, np.nan, 1.5]), np.array([0.5, 0.5, 1.5]),
                             tri).tolist() == [True, False, False]


def test_combine_modes():
    cur = np.array([True, True, False, False])
    new = np.array([True, False, True, False])
    assert combine(cur, new, "replace").tolist() == new.tolist()
    assert combine(cur, new, "add").tolist() == [True, True, True, False]
    assert combine(cur, new, "subtract").tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="selection mode"):
        combine(cur, new, "xor")


def test_mean_nearest_simplify():
    v = np.array([0.2, np.nan, 0.6, 1.0])
    assert mean_finite(v, np.array([True, True, True, False])) == pytest.approx(0.4)
    assert np.isnan(mean_finite(v, np.array([False, True, False, False])))
    x, y = np.array([0.0, 10.0, np.nan]), np.array([0.0, 10.0, 0.0])
    assert nearest_point(x, y, 9.0, 9.5) == 1
    assert nearest_point(x, y, 5.0, 5.0, max_dist=2.0) == -1
    assert nearest_point(x, y, 5.0, 5.0, sx=10.0, sy=10.0, max_dist=1.0) in (0, 1)
    path = np.array([[0, 0], [0.001, 0], [1, 0], [1, 1], [1, 1.0001], [0, 1]], float)
    assert simplify_path(path, 0.01).tolist() == [[0, 0], [1, 0], [1, 1], [0, 1]]


def test_palette_bins_cover_the_closed_range_and_mark_missing():
    from segexplain.segexplain_qgis.coloring import N_BINS, bin_index

    v = np.array([0.0, 0.5, 1.0, 1.7, -3.0, np.nan, np.inf])
    assert bin_index(v, 0.0, 1.0).tolist() == [0, N_BINS // 2, N_BINS - 1, N_BINS - 1, 0,
                                               N_BINS, N_BINS]


def test_view_range_ignores_a_few_far_outliers():
    from segexplain.segexplain_qgis.scatter import robust_range

    rng = np.random.default_rng(0)
    bulk = rng.normal(0, 1, 500)
    lo, hi = robust_range(np.r_[bulk, [400.0, np.nan]])
    assert -4 < lo < -1.5 and 1.5 < hi < 4
    assert robust_range(bulk) == (bulk.min(), bulk.max())
    assert robust_range(np.array([np.nan])) is None
    assert robust_range(np.array([2.0, 2.0])) == (1.5, 2.5)
