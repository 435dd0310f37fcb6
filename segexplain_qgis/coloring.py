"""How the explorer colours its points: a palette code per point, the palette, the legend.

No Qt (numpy and `colors`): the scatter turns the palette into brushes and draws the
points of each code together. Continuous columns (IoU, estimated IoU, novelty) are cut
into `N_BINS` bins along their ramp plus one grey code for missing values; categorical
columns (cluster, region) get one colour per value and a legend. An estimate that is
not claimed (beyond the reference's coverage, see `coverage`) gets its own code, drawn
as a hollow grey marker. `PlaneColoring` puts the colours of every open bundle on the
scatter and redraws only when they change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .colors import (
    IOU_STOPS,
    NOISE_RGB,
    RGB,
    UNKNOWN_RGB,
    Stops,
    category_rgb,
    ramp_bins,
    reversed_stops,
)
from .coverage import ESTIMATE_COLUMNS, LABEL_ERROR_MAX, unknown_mask

if TYPE_CHECKING:  # types only: the session module loads QGIS
    from .session import BundleSession

#: Colour-by choices: label -> patches column.
COLOR_CHOICES = {"IoU": "iou", "estimated IoU": "est_iou", "cluster": "cluster",
                 "region": "region", "novelty": "novelty", "label error": "label_error"}
CATEGORICAL = ("cluster", "region")
#: Continuous colourings are sampled into this many shared colours.
N_BINS = 32


@dataclass(frozen=True)
class PointColors:
    """Palette code per point, the palette, the legend entries (categorical only).

    `hollow`: the palette codes drawn as hollow markers (unknown estimates).
    """

    codes: np.ndarray
    palette: list[RGB]
    legend: list[tuple[str, RGB]] = field(default_factory=list)
    hollow: tuple[int, ...] = ()


@dataclass(frozen=True)
class ContinuousScale:
    """What the colour bar of a continuous colouring shows."""

    label: str
    lo: float
    hi: float
    stops: Stops


def bin_index(values: np.ndarray, lo: float, hi: float, n_bins: int = N_BINS) -> np.ndarray:
    """Palette index per value in [0, n_bins); n_bins for NaN (the "missing" colour)."""
    v = np.asarray(values, dtype=float)
    span = hi - lo if hi > lo else 1.0
    with np.errstate(invalid="ignore"):
        idx = np.floor((v - lo) / span * n_bins)
    idx = np.clip(np.nan_to_num(idx, nan=0.0), 0, n_bins - 1).astype(np.int64)
    idx[~np.isfinite(v)] = n_bins
    return idx


def continuous_palette(stops: Stops, n_bins: int = N_BINS) -> list[RGB]:
    """`n_bins` colours along the ramp plus grey (index n_bins) for missing values."""
    return [*ramp_bins(stops, n_bins), NOISE_RGB]


def choice_label(column: str) -> str:
    """The colour-by label of a column (the column name when it is not a choice)."""
    return next((k for k, v in COLOR_CHOICES.items() if v == column), column)


def continuous_scale(column: str) -> ContinuousScale:
    """Range and ramp of a continuous column: novelty 0-100 reversed, scores 0-1."""
    if column == "novelty":
        return ContinuousScale("novelty (percentile)", 0.0, 100.0, reversed_stops(IOU_STOPS))
    if column == "label_error":
        return ContinuousScale("label disagreement (share of pixels)", 0.0, LABEL_ERROR_MAX,
                               reversed_stops(IOU_STOPS))
    return ContinuousScale(choice_label(column), 0.0, 1.0, IOU_STOPS)


def point_colors(columns: Mapping[str, np.ndarray], n: int, column: str) -> PointColors:
    """Colours of one bundle's `n` points by `column` of its patches table."""
    v = columns.get(column)
    if column in CATEGORICAL:
        if v is None:
            return PointColors(np.zeros(n, np.int64), [category_rgb(-1)])
        if v.dtype == object:
            names, inverse = np.unique(np.array([str(x) for x in v.tolist()]),
                                       return_inverse=True)
            palette = [category_rgb(i) for i in range(len(names))]
            return PointColors(inverse.astype(np.int64), palette,
                               list(zip(names.tolist(), palette, strict=True)))
        ids = np.nan_to_num(np.asarray(v, float), nan=-1).astype(np.int64)
        uniq, inverse = np.unique(ids, return_inverse=True)
        palette = [category_rgb(int(i)) for i in uniq]
        legend = [("noise" if i < 0 else f"cluster {i}", c)
                  for i, c in zip(uniq.tolist(), palette, strict=True)]
        return PointColors(inverse.astype(np.int64), palette, legend)
    scale = continuous_scale(column)
    palette = continuous_palette(scale.stops)
    if v is None:
        return PointColors(np.full(n, len(palette) - 1, np.int64), palette)
    codes = bin_index(np.asarray(v, float), scale.lo, scale.hi)
    unknown = unknown_mask(columns, n) if column in ESTIMATE_COLUMNS else None
    if unknown is None or not unknown.any():
        return PointColors(codes, palette)
    codes[unknown] = len(palette)
    return PointColors(codes, [*palette, UNKNOWN_RGB], hollow=(len(palette),))


def available_choices(has: Callable[[str], bool]) -> list[str]:
    """Colour-by labels whose column has values (`has(column)`)."""
    return [label for label, col in COLOR_CHOICES.items() if has(col)]


def default_choice(has_labels: bool) -> str:
    """The colour-by label of a bundle's quality: IoU, or estimated IoU without labels."""
    return "IoU" if has_labels else "estimated IoU"


def column_for(label: str, has: Callable[[str], bool], fallback: str) -> str:
    """Column of a colour-by label, or `fallback` when the bundle has no such values."""
    col = COLOR_CHOICES.get(label)
    return col if col is not None and has(col) else fallback


def own_column(column: str, has_labels: bool) -> str:
    """Column of an overlaid bundle for the base's colouring (IoU -> est. IoU unlabelled)."""
    return "est_iou" if column == "iou" and not has_labels else column


class ColorScatter(Protocol):
    """The drawing side of `PlaneColoring` (`scatter.LatentScatter`)."""

    def set_points(self, x: np.ndarray, y: np.ndarray, codes: np.ndarray,
                   palette: Sequence[RGB], hollow: Sequence[int] = ()) -> None: ...

    def set_colors(self, codes: np.ndarray, palette: Sequence[RGB],
                   hollow: Sequence[int] = ()) -> None: ...

    def set_overlay(self, key: str, x: np.ndarray, y: np.ndarray,
                    codes: np.ndarray | None = None,
                    palette: Sequence[RGB] | None = None,
                    hollow: Sequence[int] = ()) -> None: ...

    def set_categories(self, entries: Sequence[tuple[str, RGB]]) -> None: ...

    def set_continuous_scale(self, label: str, lo: float, hi: float,
                             stops: Stops) -> None: ...


class PlaneColoring:
    """Colours of every open bundle's points on the scatter, with the matching scale.

    The first bundle defines the plane and the colouring; the others (overlays) follow
    it with their own values (estimated IoU where an overlay has no IoU).
    """

    def __init__(self, scatter: ColorScatter) -> None:
        self.scatter = scatter
        self._drawn: tuple[tuple[str, ...], str] | None = None

    def show_base(self, s: BundleSession, label: str) -> None:
        """Draw the plane-defining bundle's points coloured by `label` (or its score)."""
        column = column_for(label, s.has, s.score_column)
        colors = point_colors(s.columns, s.n, column)
        self.scatter.set_points(s.x, s.y, colors.codes, colors.palette, colors.hollow)
        self._drawn = ((s.key,), column)
        self._show_scale(column, colors)

    def apply(self, sessions: Sequence[BundleSession], label: str) -> None:
        """Colour every bundle by `label`; nothing to do when that is already drawn."""
        if not sessions:
            self._drawn = None
            return
        base = sessions[0]
        column = COLOR_CHOICES.get(label, base.score_column)
        state = (tuple(s.key for s in sessions), column)
        if state == self._drawn:
            return  # colours already drawn (re-styling 100k points costs ~0.3 s)
        self._drawn = state
        colors = point_colors(base.columns, base.n, column)
        self.scatter.set_colors(colors.codes, colors.palette, colors.hollow)
        for s in sessions[1:]:
            own = point_colors(s.columns, s.n, own_column(column, s.has_labels))
            self.scatter.set_overlay(s.key, s.x, s.y, own.codes, own.palette, own.hollow)
        self._show_scale(column, colors)

    def _show_scale(self, column: str, colors: PointColors) -> None:
        if column in CATEGORICAL:
            self.scatter.set_categories(colors.legend)
        else:
            scale = continuous_scale(column)
            self.scatter.set_continuous_scale(scale.label, scale.lo, scale.hi, scale.stops)
