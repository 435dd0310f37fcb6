"""Which patches are selected: the explorer's selection as a model, without Qt.

`Selection` holds the selected patch ids of one bundle (a boolean mask over ids 0..n-1),
the bundle's points on the latent plane and its scores: a brush, a list of ids (a
cluster, later a similarity search) or the map changes it, and it knows the mean IoU of
what is selected. Each new selection merges into the current one: "replace", "add"
(union) or "subtract". `SelectionGroup` holds the selections of every open bundle on one
plane, so a brush selects in all of them at once. `MapSync` is the thin adapter that
keeps a selection and a map layer's selection in step (the layer side is
`link.FootprintLink`).

Every change tells its listeners where it came from (`BRUSH` or `MAP`), so a selection
that came from the map is never pushed back to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import numpy as np

from .brushes import nearest_point, points_in_polygon, points_in_rect

#: How a new selection merges into the current one.
MODES = ("replace", "add", "subtract")
#: Where a change came from.
BRUSH = "brush"
MAP = "map"


def combine(current: np.ndarray, new: np.ndarray, mode: str) -> np.ndarray:
    """Merge a new selection into the current one: "replace", "add" or "subtract"."""
    if mode == "replace":
        return new.copy()
    if mode == "add":
        return current | new
    if mode == "subtract":
        return current & ~new
    raise ValueError(f"selection mode {mode!r}: expected one of {MODES}")


def mean_finite(values: np.ndarray, mask: np.ndarray) -> float:
    """Mean of `values[mask]` over finite entries (NaN when there are none)."""
    v = values[mask]
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


class Selection:
    """The selected patches of one bundle, with the bundle's points and scores.

    `x`, `y`: the patches' positions on the latent plane (patch id = index); `scores`:
    the value whose mean summarises a selection (IoU, or estimated IoU without labels).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, scores: np.ndarray | None = None) -> None:
        self.x = np.asarray(x, dtype=float)
        self.y = np.asarray(y, dtype=float)
        if self.x.ndim != 1 or self.x.shape != self.y.shape:
            raise ValueError(f"points of shapes {self.x.shape} and {self.y.shape}: expected "
                             "two 1-D arrays of the same length (pc1, pc2 per patch)")
        self.n = int(self.x.size)
        self.scores = None if scores is None else np.asarray(scores, dtype=float)
        if self.scores is not None and self.scores.shape != self.x.shape:
            raise ValueError(f"{self.scores.size} scores for {self.n} patches: expected one "
                             "score per patch")
        self._mask = self._frozen(np.zeros(self.n, dtype=bool))
        self._listeners: list[Callable[[Selection, str], None]] = []

    @staticmethod
    def _frozen(mask: np.ndarray) -> np.ndarray:
        mask.flags.writeable = False  # changes go through set_mask, which tells listeners
        return mask

    # -- what is selected ------------------------------------------------------------
    @property
    def mask(self) -> np.ndarray:
        """Boolean mask over patch ids (read-only)."""
        return self._mask

    def ids(self) -> np.ndarray:
        """Selected patch ids, ascending."""
        return np.flatnonzero(self._mask)

    @property
    def count(self) -> int:
        """Number of selected patches."""
        return int(np.count_nonzero(self._mask))

    def mean_score(self) -> float:
        """Mean score (IoU) of the selected patches that have one; NaN when none has."""
        return mean_finite(self.scores, self._mask) if self.scores is not None else float("nan")

    def summary(self) -> tuple[int, float]:
        """(count, mean score) of the selection."""
        return self.count, self.mean_score()

    # -- changes ---------------------------------------------------------------------
    def set_mask(self, mask: np.ndarray, source: str = BRUSH) -> None:
        """Make `mask` (one bool per patch) the selection and tell the listeners."""
        m = np.array(mask, dtype=bool)  # a copy: no caller keeps a handle on the state
        if m.shape != (self.n,):
            raise ValueError(f"selection mask of shape {m.shape}: expected ({self.n},), one "
                             "entry per patch")
        self._mask = self._frozen(m)
        for listener in list(self._listeners):
            listener(self, source)

    def merge(self, new: np.ndarray, mode: str = "replace", source: str = BRUSH) -> None:
        """Merge a boolean mask into the selection ("replace", "add" or "subtract")."""
        self.set_mask(combine(self._mask, np.asarray(new, dtype=bool), mode), source)

    def merge_ids(self, ids: Iterable[int], mode: str = "replace",
                  source: str = BRUSH) -> None:
        """Merge patch ids into the selection."""
        idx = np.fromiter((int(i) for i in ids), dtype=np.int64)
        bad = idx[(idx < 0) | (idx >= self.n)]
        if bad.size:
            raise ValueError(f"patch id {int(bad[0])}: expected 0..{self.n - 1}")
        new = np.zeros(self.n, dtype=bool)
        new[idx] = True
        self.merge(new, mode, source)

    def brush_rect(self, x0: float, y0: float, x1: float, y1: float,
                   mode: str = "replace") -> None:
        """Merge the points inside a rectangle of the plane."""
        self.merge(points_in_rect(self.x, self.y, x0, y0, x1, y1), mode)

    def brush_polygon(self, poly: np.ndarray, mode: str = "replace") -> None:
        """Merge the points inside a lasso polygon (M x 2, closed implicitly)."""
        self.merge(points_in_polygon(self.x, self.y, poly), mode)

    def clear(self, source: str = BRUSH) -> None:
        """Nothing selected."""
        self.set_mask(np.zeros(self.n, dtype=bool), source)

    def subscribe(self, listener: Callable[[Selection, str], None]) -> Callable[[], None]:
        """Call `listener(selection, source)` after every change; returns the unsubscriber."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


class SelectionGroup:
    """The selections of every open bundle on one latent plane, in opening order."""

    def __init__(self) -> None:
        self._members: dict[str, Selection] = {}

    def add(self, key: str, selection: Selection) -> None:
        """Add a bundle's selection under its key."""
        if key in self._members:
            raise ValueError(f"bundle {key!r} is already in the group")
        self._members[key] = selection

    def remove(self, key: str) -> None:
        """Forget a bundle (no error when it is not there)."""
        self._members.pop(key, None)

    def __getitem__(self, key: str) -> Selection:
        return self._members[key]

    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[tuple[str, Selection]]:
        return iter(list(self._members.items()))

    # -- changes in every bundle -----------------------------------------------------
    def brush_rect(self, x0: float, y0: float, x1: float, y1: float,
                   mode: str = "replace") -> None:
        """A rectangle brush in every bundle."""
        for _, sel in self:
            sel.brush_rect(x0, y0, x1, y1, mode)

    def brush_polygon(self, poly: np.ndarray, mode: str = "replace") -> None:
        """A lasso brush in every bundle."""
        for _, sel in self:
            sel.brush_polygon(poly, mode)

    def only(self, key: str, mask: np.ndarray) -> None:
        """Make `mask` the selection of one bundle; the others are cleared."""
        if key not in self._members:
            raise KeyError(key)
        for k, sel in self:
            if k == key:
                sel.set_mask(mask)
            else:
                sel.clear()

    def clear(self) -> None:
        """Nothing selected anywhere."""
        for _, sel in self:
            sel.clear()

    # -- what is selected ------------------------------------------------------------
    def selected_points(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the selected points of every bundle (for the highlight)."""
        sels = [sel for _, sel in self]
        if not sels:
            return np.zeros(0), np.zeros(0)
        return (np.concatenate([s.x[s.mask] for s in sels]),
                np.concatenate([s.y[s.mask] for s in sels]))

    def selected_items(self) -> list[tuple[str, int]]:
        """(bundle key, patch id) of every selected patch, bundle by bundle."""
        return [(k, i) for k, sel in self for i in sel.ids().tolist()]

    def nearest(self, qx: float, qy: float, sx: float = 1.0, sy: float = 1.0,
                max_px: float = np.inf) -> tuple[str, int] | None:
        """(bundle key, patch id) of the point nearest to (qx, qy) within `max_px` pixels.

        `sx`, `sy` are data units per screen pixel.
        """
        best: tuple[float, str, int] | None = None
        for key, sel in self:
            i = nearest_point(sel.x, sel.y, qx, qy, sx, sy, max_px)
            if i >= 0:
                d = ((sel.x[i] - qx) / sx) ** 2 + ((sel.y[i] - qy) / sy) ** 2
                if best is None or d < best[0]:
                    best = (d, key, i)
        return None if best is None else (best[1], best[2])


class LayerSelection(Protocol):
    """The map side of a selection (`link.FootprintLink` in QGIS)."""

    on_map_selection: Callable[[np.ndarray], None] | None

    def push(self, mask: np.ndarray) -> None:
        """Make the layer's selection the patches where `mask` is true."""


class MapSync:
    """Keeps a `Selection` and a map layer's selection in step.

    Changes of the selection are pushed to the layer, except those that came from it;
    the layer's own changes come back through `from_map`.
    """

    def __init__(self, selection: Selection, layer: LayerSelection) -> None:
        self.selection = selection
        self.layer: LayerSelection | None = layer
        layer.on_map_selection = self.from_map
        self._unsubscribe = selection.subscribe(self._changed)

    def _changed(self, selection: Selection, source: str) -> None:
        if source != MAP and self.layer is not None:
            self.layer.push(selection.mask)

    def from_map(self, mask: np.ndarray) -> None:
        """The layer's selection changed: it becomes the selection."""
        self.selection.set_mask(mask, MAP)

    def close(self) -> None:
        """Stop syncing in both directions (idempotent)."""
        self._unsubscribe()
        if self.layer is not None and self.layer.on_map_selection == self.from_map:
            self.layer.on_map_selection = None
        self.layer = None
