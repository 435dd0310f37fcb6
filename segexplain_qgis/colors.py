"""The explorer's palettes, in one place: map styles, latent scatter and gallery.

Plain RGB(A) tuples, no Qt: the map (`layers`) wraps them in QGIS's QColor,
the scatter (`scatter`, `point_cloud`) in pyqtgraph's, the gallery paints them into
numpy thumbnails. The same IoU therefore has the same colour on the map and on the plane.
"""

from __future__ import annotations

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
#: A piecewise-linear colour ramp: (position in [0, 1], colour), positions increasing.
Stops = list[tuple[float, RGB]]

#: Red (0) - yellow - green (1) for IoU-like scores.
IOU_STOPS: Stops = [(0.0, (215, 48, 39)), (0.25, (252, 141, 89)), (0.5, (254, 224, 139)),
                    (0.75, (145, 207, 96)), (1.0, (26, 152, 80))]
#: White - blue for the estimated-IoU heatmap behind the points.
HEATMAP_STOPS: Stops = [(0.0, (250, 250, 250)), (0.5, (158, 202, 225)),
                        (1.0, (33, 113, 181))]
#: Categorical palette (tab20-like) for clusters and regions.
CATEGORY_RGB: list[RGB] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (188, 189, 34), (23, 190, 207), (174, 199, 232),
    (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213), (196, 156, 148),
    (247, 182, 210), (219, 219, 141), (158, 218, 229), (127, 127, 127), (57, 59, 121),
]
#: DBSCAN noise (cluster -1) and missing values.
NOISE_RGB: RGB = (160, 160, 160)
#: An estimate not claimed (beyond the reference's coverage): a neutral grey, drawn hollow.
UNKNOWN_RGB: RGB = (110, 110, 110)

#: Building in the ground truth / in the prediction.
LABEL_RGB: RGB = (255, 220, 0)
LABEL_OUTLINE_RGB: RGB = (230, 180, 0)
PREDICTION_RGB: RGB = (255, 0, 255)
#: Confusion codes (as in the bundle's confusion rasters) -> colour: TP, FP, FN.
ERROR_RGB: dict[int, RGB] = {1: (46, 204, 64), 2: (255, 65, 54), 3: (0, 116, 217)}

#: Raster classes: value -> (label, RGBA); background and true negatives transparent.
CONFUSION_CLASSES: dict[int, tuple[str, RGBA]] = {
    0: ("true negative", (0, 0, 0, 0)),
    1: ("true positive", (*ERROR_RGB[1], 200)),
    2: ("false positive", (*ERROR_RGB[2], 220)),
    3: ("false negative", (*ERROR_RGB[3], 220)),
}
PREDICTION_CLASSES: dict[int, tuple[str, RGBA]] = {
    0: ("background", (0, 0, 0, 0)), 1: ("building", (*PREDICTION_RGB, 170))}
#: Ground truth (0/1 or 0/255 masks).
LABEL_CLASSES: dict[int, tuple[str, RGBA]] = {
    0: ("background", (0, 0, 0, 0)), 1: ("building", (*LABEL_RGB, 170)),
    255: ("building", (*LABEL_RGB, 170))}


def reversed_stops(stops: Stops) -> Stops:
    """The same ramp run backwards (high values get the colour of low ones)."""
    return [(1.0 - s, c) for s, c in reversed(stops)]


def ramp_rgb(stops: Stops, v: float) -> RGB:
    """Colour of `v` on a piecewise-linear ramp (clamped to its ends)."""
    if v <= stops[0][0]:
        return stops[0][1]
    for (a, ca), (b, cb) in zip(stops, stops[1:], strict=False):
        if v <= b:
            t = (v - a) / (b - a) if b > a else 0.0
            r, g, bl = (round(x + t * (y - x)) for x, y in zip(ca, cb, strict=True))
            return r, g, bl
    return stops[-1][1]


def ramp_bins(stops: Stops, n_bins: int) -> list[RGB]:
    """`n_bins` colours sampled at the bin centres of [0, 1] along a ramp."""
    return [ramp_rgb(stops, (i + 0.5) / n_bins) for i in range(n_bins)]


def category_rgb(i: int) -> RGB:
    """Colour of category `i`; negative ids (noise) are grey."""
    return NOISE_RGB if i < 0 else CATEGORY_RGB[i % len(CATEGORY_RGB)]

