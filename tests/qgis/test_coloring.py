"""Palettes and point colouring without Qt: one palette for map and plane, codes per point.

Plain pytest (no QGIS fixture): `pytest -p no:qgis tests/qgis/test_coloring.py`.
"""

import numpy as np
import pytest
from segexplain.segexplain_qgis import colors
from segexplain.segexplain_qgis.coloring import (
    N_BINS,
    PlaneColoring,
    available_choices,
    column_for,
    continuous_scale,
    point_colors,
)


def test_ramp_ends_midpoint_and_reversal():
    stops = colors.IOU_STOPS
    assert colors.ramp_rgb(stops, -1.0) == stops[0][1]
    assert colors.ramp_rgb(stops, 2.0) == stops[-1][1]
    assert colors.ramp_rgb(stops, 0.5) == stops[2][1]
    a, b = stops[0][1], stops[1][1]
    halfway = tuple(round((x + y) / 2) for x, y in zip(a, b, strict=True))
    assert colors.ramp_rgb(stops, 0.125) == halfway
    rev = colors.reversed_stops(stops)
    for t in np.linspace(0, 1, 11):
        assert colors.ramp_rgb(rev, t) == colors.ramp_rgb(stops, 1 - t)
    bins = colors.ramp_bins(stops, 4)
    assert bins == [colors.ramp_rgb(stops, t) for t in (0.125, 0.375, 0.625, 0.875)]


def test_noise_and_missing_share_one_grey():
    assert colors.category_rgb(-1) == colors.NOISE_RGB
    assert colors.category_rgb(0) == colors.CATEGORY_RGB[0]
    assert colors.category_rgb(len(colors.CATEGORY_RGB)) == colors.CATEGORY_RGB[0]
    pc = point_colors({"iou": np.array([np.nan])}, 1, "iou")
    assert pc.palette[pc.codes[0]] == colors.NOISE_RGB


def test_error_and_mask_colours_match_the_map_classes():
    for code, rgb in colors.ERROR_RGB.items():
        assert colors.CONFUSION_CLASSES[code][1][:3] == rgb
    assert colors.PREDICTION_CLASSES[1][1][:3] == colors.PREDICTION_RGB
    assert colors.LABEL_CLASSES[1][1][:3] == colors.LABEL_CLASSES[255][1][:3] == colors.LABEL_RGB


def test_continuous_colouring_bins_scores_and_greys_missing():
    iou = np.array([0.0, 0.49, 1.0, np.nan])
    pc = point_colors({"iou": iou}, 4, "iou")
    assert len(pc.palette) == N_BINS + 1 and pc.legend == []
    assert pc.codes.tolist() == [0, int(0.49 * N_BINS), N_BINS - 1, N_BINS]
    assert pc.palette[0] == colors.ramp_rgb(colors.IOU_STOPS, 0.5 / N_BINS)
    nov = point_colors({"novelty": np.array([0.0, 100.0])}, 2, "novelty")
    assert nov.palette[nov.codes[0]] == pc.palette[N_BINS - 1]   # low novelty is green
    absent = point_colors({}, 3, "est_iou")
    assert absent.codes.tolist() == [N_BINS] * 3
    scale = continuous_scale("novelty")
    assert (scale.lo, scale.hi) == (0.0, 100.0) and scale.label.startswith("novelty")
    assert continuous_scale("est_iou").label == "estimated IoU"


def test_categorical_colouring_codes_palette_and_legend():
    pc = point_colors({"cluster": np.array([3.0, -1.0, 3.0, np.nan, 0.0])}, 5, "cluster")
    assert pc.codes.tolist() == [2, 0, 2, 0, 1]
    assert pc.palette == [colors.NOISE_RGB, colors.category_rgb(0), colors.category_rgb(3)]
    assert [name for name, _ in pc.legend] == ["noise", "cluster 0", "cluster 3"]
    regions = np.array(["b", "a", "b"], dtype=object)
    pr = point_colors({"region": regions}, 3, "region")
    assert pr.codes.tolist() == [1, 0, 1] and [n for n, _ in pr.legend] == ["a", "b"]
    assert point_colors({}, 2, "region").codes.tolist() == [0, 0]


def test_choices_follow_the_columns_present():
    cols = {"iou": np.array([np.nan]), "est_iou": np.array([0.5]), "cluster": np.array([1.0])}

    def has(col):
        return col in cols and bool(np.isfinite(cols[col]).any())

    assert available_choices(has) == ["estimated IoU", "cluster"]
    assert column_for("IoU", has, "est_iou") == "est_iou"
    assert column_for("cluster", has, "est_iou") == "cluster"


class Bundle:
    """The parts of a bundle session that PlaneColoring reads."""

    def __init__(self, key, iou=None, est=None):
        self.key = key
        self.columns = {k: v for k, v in (("iou", iou), ("est_iou", est)) if v is not None}
        self.n = len(next(iter(self.columns.values())))
        self.x = np.arange(self.n, dtype=float)
        self.y = np.zeros(self.n)
        self.has_labels = self.has("iou")
        self.score_column = "iou" if self.has_labels else "est_iou"

    def has(self, col):
        return col in self.columns and bool(np.isfinite(self.columns[col]).any())


class ScatterRecorder:
    """Records the drawing calls PlaneColoring makes."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        return lambda *args, **kwargs: self.calls.append((name, args))


def test_plane_colouring_redraws_only_on_change_and_overlays_use_their_scores():
    base = Bundle("a", iou=np.array([0.0, 1.0]))
    new = Bundle("b", est=np.array([1.0, np.nan, 0.0]))
    scatter = ScatterRecorder()
    coloring = PlaneColoring(scatter)
    coloring.show_base(base, "IoU")
    assert [c[0] for c in scatter.calls] == ["set_points", "set_continuous_scale"]
    scatter.calls.clear()
    coloring.apply([base], "IoU")
    assert scatter.calls == []                              # already drawn
    coloring.apply([base, new], "IoU")
    names = [c[0] for c in scatter.calls]
    assert names == ["set_colors", "set_overlay", "set_continuous_scale"]
    _key, _x, _y, codes, _palette, _hollow = scatter.calls[1][1]
    assert codes.tolist() == [N_BINS - 1, N_BINS, 0]        # the overlay's estimated IoU
    scatter.calls.clear()
    coloring.apply([], "IoU")
    coloring.apply([base, new], "IoU")
    assert scatter.calls                                    # nothing open reset the state


@pytest.mark.parametrize("label", ["IoU", "estimated IoU"])
def test_plane_colouring_scale_label(label):
    scatter = ScatterRecorder()
    b = Bundle("a", iou=np.array([0.2]), est=np.array([0.3]))
    PlaneColoring(scatter).show_base(b, label)
    assert scatter.calls[-1] == ("set_continuous_scale",
                                 (label, 0.0, 1.0, colors.IOU_STOPS))
