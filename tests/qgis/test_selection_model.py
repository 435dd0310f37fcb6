"""The explorer's selection model without Qt: ids, merges, several bundles, the map adapter.

Plain pytest (no QGIS fixture): `pytest -p no:qgis tests/qgis/test_selection_model.py`.
"""

import subprocess
import sys

import numpy as np
import pytest
from segexplain.segexplain_qgis.selection import (
    BRUSH,
    MAP,
    MapSync,
    Selection,
    SelectionGroup,
)


def grid_selection(n_side=5, scores=None):
    """Points on a unit grid: patch id = row * n_side + col, x = col, y = row."""
    y, x = np.divmod(np.arange(n_side * n_side), n_side)
    return Selection(x.astype(float), y.astype(float), scores)


def test_ids_replace_add_subtract_and_mean_score():
    scores = np.linspace(0, 1, 25)
    scores[7] = np.nan
    sel = grid_selection(scores=scores)
    sel.brush_rect(0, 0, 2, 1)                         # cols 0-2, rows 0-1
    assert sel.ids().tolist() == [0, 1, 2, 5, 6, 7]
    assert sel.count == 6
    assert sel.mean_score() == pytest.approx(np.mean(scores[[0, 1, 2, 5, 6]]))
    sel.brush_rect(4, 4, 3, 3, mode="add")             # corners in any order
    assert sel.ids().tolist() == [0, 1, 2, 5, 6, 7, 18, 19, 23, 24]
    sel.brush_rect(1, 0, 1, 4, mode="subtract")        # column 1 out
    assert sel.ids().tolist() == [0, 2, 5, 7, 18, 19, 23, 24]
    sel.merge_ids([7, 8], mode="add")
    assert sel.ids().tolist() == [0, 2, 5, 7, 8, 18, 19, 23, 24]
    sel.merge_ids([3], mode="replace")
    assert sel.summary() == (1, pytest.approx(scores[3]))
    sel.clear()
    assert sel.count == 0 and np.isnan(sel.mean_score())
    with pytest.raises(ValueError, match="selection mode"):
        sel.merge(np.ones(25, bool), mode="xor")
    with pytest.raises(ValueError, match="patch id 25"):
        sel.merge_ids([25])


def test_lasso_merges_like_a_rectangle():
    sel = grid_selection()
    triangle = np.array([[-0.5, -0.5], [4.5, -0.5], [-0.5, 4.5]])  # below the anti-diagonal
    sel.brush_polygon(triangle)
    assert sel.ids().tolist() == [i for i in range(25) if i % 5 + i // 5 < 4]


def test_mask_is_read_only_and_checked():
    sel = grid_selection()
    mask = np.zeros(25, bool)
    mask[3] = True
    sel.set_mask(mask)
    mask[4] = True                                      # the caller's array is not the state
    assert sel.ids().tolist() == [3]
    with pytest.raises(ValueError):
        sel.mask[0] = True
    with pytest.raises(ValueError, match=r"expected \(25,\)"):
        sel.set_mask(np.zeros(24, bool))
    with pytest.raises(ValueError, match="one score per patch"):
        Selection(np.zeros(3), np.zeros(3), np.zeros(2))


def test_listeners_hear_every_change_with_its_source():
    sel = grid_selection()
    heard = []
    stop = sel.subscribe(lambda s, source: heard.append((s.ids().tolist(), source)))
    sel.brush_rect(0, 0, 0, 0)
    sel.set_mask(np.arange(25) == 24, source=MAP)
    stop()
    sel.clear()
    assert heard == [([0], BRUSH), ([24], MAP)]


def test_group_brushes_every_bundle_and_selects_in_one():
    a = grid_selection()
    b = Selection(np.array([0.5, 3.0, np.nan]), np.array([0.5, 3.0, 0.0]), np.array([.2, .4, .6]))
    group = SelectionGroup()
    group.add("a", a)
    group.add("b", b)
    with pytest.raises(ValueError, match="already"):
        group.add("a", a)
    group.brush_rect(0, 0, 1, 1)
    assert a.ids().tolist() == [0, 1, 5, 6] and b.ids().tolist() == [0]
    group.brush_polygon(np.array([[2.5, 2.5], [3.5, 2.5], [3.5, 3.5], [2.5, 3.5]]), "add")
    assert a.ids().tolist() == [0, 1, 5, 6, 18] and b.ids().tolist() == [0, 1]
    assert group.selected_items() == [("a", 0), ("a", 1), ("a", 5), ("a", 6), ("a", 18),
                                      ("b", 0), ("b", 1)]
    x, y = group.selected_points()
    assert x.tolist() == [0, 1, 0, 1, 3, 0.5, 3.0] and y.tolist() == [0, 0, 1, 1, 3, 0.5, 3.0]
    group.only("b", np.array([False, False, True]))
    assert a.count == 0 and b.ids().tolist() == [2]
    with pytest.raises(KeyError):
        group.only("c", np.zeros(3, bool))
    assert group.nearest(0.6, 0.6, max_px=1.0) == ("b", 0)   # nearer than a's (1, 1)
    assert group.nearest(10, 10, max_px=1.0) is None
    group.clear()
    assert group.selected_items() == []
    group.remove("a")
    assert [k for k, _ in group] == ["b"] and len(group) == 1


class LayerRecorder:
    """Stands in for the footprint layer's selection: records what is pushed to it."""

    def __init__(self):
        self.on_map_selection = None
        self.pushed = []

    def push(self, mask):
        self.pushed.append(np.flatnonzero(mask).tolist())

    def user_selects(self, ids, n):
        mask = np.zeros(n, bool)
        mask[ids] = True
        if self.on_map_selection is not None:
            self.on_map_selection(mask)


def test_map_sync_pushes_brushes_and_takes_map_selections_without_echo():
    sel = grid_selection()
    layer = LayerRecorder()
    sync = MapSync(sel, layer)
    sel.brush_rect(0, 0, 1, 0)
    assert layer.pushed == [[0, 1]]
    layer.user_selects([7, 9], 25)                    # selected on the map
    assert sel.ids().tolist() == [7, 9] and layer.pushed == [[0, 1]]  # not pushed back
    sel.brush_rect(4, 4, 4, 4, mode="add")
    assert layer.pushed[-1] == [7, 9, 24]
    sync.close()
    sync.close()
    assert layer.on_map_selection is None
    sel.clear()
    assert layer.pushed[-1] == [7, 9, 24]             # no longer linked


def test_model_modules_load_without_qt():
    """selection, brushes, coloring, colors and captions import neither Qt nor QGIS."""
    code = ("import sys\n"
            "from segexplain.segexplain_qgis import brushes, captions, coloring, colors, "
            "selection\n"
            "print('LOADED', sorted({m.split('.')[0] for m in sys.modules} & "
            "{'qgis', 'PyQt5', 'PyQt6', 'pyqtgraph'}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
