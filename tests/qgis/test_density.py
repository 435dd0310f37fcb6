"""Points as an image (no Qt): cells, mean colours, opacity by count, selection marks.

Plain pytest (no QGIS fixture): `pytest -p no:qgis tests/qgis/test_density.py`.
"""

import numpy as np
import pytest
from segexplain.segexplain_qgis.brushes import points_in_polygon, y_order
from segexplain.segexplain_qgis.density import (
    MARK_FILL,
    MARK_RING,
    box_sum,
    cell_index,
    density_rgba,
    dilate,
    marks_rgba,
    premultiplied_bgra,
)
from segexplain.segexplain_qgis.selection import SelectedItems


def test_cell_index_bounds_and_nan():
    fx = np.array([0.0, 0.99, 1.0, 3.5, -0.01, 4.0, np.nan, 2.2, 1e12, -1e12])
    fy = np.array([0.0, 0.0, 2.9, 2.0, 1.0, 1.0, 1.0, np.nan, 0.0, 0.0])
    got = cell_index(fx.copy(), fy.copy(), 4, 3)
    assert got.tolist() == [0, 0, 9, 11, -1, -1, -1, -1, -1, -1]


def test_box_sum_and_dilate_agree_with_brute_force():
    rng = np.random.default_rng(0)
    a = (rng.random((9, 13)) < 0.1).astype(float)
    for r in (1, 2):
        want = np.zeros_like(a)
        for i in range(a.shape[0]):
            for j in range(a.shape[1]):
                want[i, j] = a[max(0, i - r):i + r + 1, max(0, j - r):j + r + 1].sum()
        assert np.allclose(box_sum(a, r), want)
        assert np.array_equal(dilate(a > 0, r), want > 0)


def test_density_colour_is_the_mean_and_opacity_grows_with_count():
    palette = np.array([[200, 0, 0], [0, 0, 200]], float)
    w, h = 12, 6
    # cell 2: one red point; cell 8: three red and one blue (far from cell 2)
    cells = np.array([2, 8, 8, 8, 8, -1])
    codes = np.array([0, 0, 0, 0, 1, 1])
    img = density_rgba(cells, palette, codes, w, h, spread=0)
    flat = img.reshape(-1, 4)
    assert flat[2].tolist() == [200, 0, 0, flat[2, 3]]
    assert flat[8, :3].tolist() == [150, 0, 50]          # mean of 3 red, 1 blue
    assert flat[8, 3] == 255 and 0 < flat[2, 3] < 255     # the densest cell is opaque
    assert (flat[[0, 1, 3, 20], 3] == 0).all()            # empty cells stay transparent
    # spread 1: each point covers its 3 x 3 cells, like a dot three cells wide
    spread = density_rgba(cells, palette, codes, w, h, spread=1)
    assert (spread.reshape(h, w, 4)[0:2, 1:4, 3] > 0).all()
    assert spread.reshape(h, w, 4)[3, 6, 3] == 0


def test_marks_tint_the_selected_cells_and_outline_them():
    img = marks_rgba(np.array([2 * 10 + 5, -1]), 10, 6, spread=1)
    tinted = (img[..., 3] == MARK_FILL[3])
    ring = (img[..., 3] == MARK_RING[3])
    assert tinted.sum() == 9 and tinted[1:4, 4:7].all()
    assert ring.sum() == 25 - 9 and ring[0:5, 3:8].sum() == 16
    assert marks_rgba(np.array([-1]), 4, 4)[..., 3].max() == 0


def test_lasso_with_a_kept_y_order_selects_the_same_points():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=5000), rng.normal(size=5000)
    x[::97], y[5::89] = np.nan, np.nan
    order = y_order(y)
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    for k in range(4):
        r = 1.0 + 0.5 * np.sin(4 * t + k)
        poly = np.c_[0.3 * k + r * np.cos(t), r * np.sin(t)]
        a = points_in_polygon(x, y, poly)
        assert 50 < a.sum() < 4900
        assert np.array_equal(a, points_in_polygon(x, y, poly, order))


def test_selected_items_read_on_demand():
    items = SelectedItems([("a", np.array([0, 4])), ("b", np.array([], np.int64)),
                           ("c", np.array([7]))])
    want = [("a", 0), ("a", 4), ("c", 7)]
    assert len(items) == 3 and list(items) == want and items == want
    assert items[-1] == ("c", 7) and items[1:] == want[1:] and items[5:9] == []
    assert SelectedItems([]) == [] and len(SelectedItems([])) == 0
    with pytest.raises(IndexError):
        items[3]


def test_premultiplied_bgra_layout_and_scale():
    rgba = np.array([[[200, 100, 50, 255], [200, 100, 50, 0]],
                     [[255, 0, 0, 128], [0, 0, 0, 0]]], dtype=np.uint8)
    out = premultiplied_bgra(rgba, 2)
    assert out.shape == (4, 4, 4) and out.flags.c_contiguous
    assert out[0, 0].tolist() == [50, 100, 200, 255] and out[1, 1].tolist() == [50, 100, 200, 255]
    assert out[0, 2].tolist() == [0, 0, 0, 0]
    assert out[2, 0].tolist() == [0, 0, 128, 128]
