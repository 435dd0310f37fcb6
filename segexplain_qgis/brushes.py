"""Brush geometry on the latent plane: pure numpy, no Qt.

Which points a rectangle or a free-hand lasso covers, and which point lies nearest to the
mouse; `selection` merges the masks into selections. The lasso test is a ray-casting
point-in-polygon run per edge over the points of that edge's y-slab only (points sorted
by y once), so a 200-vertex lasso over 100,000 points costs a few milliseconds.
"""

from __future__ import annotations

import numpy as np


def points_in_rect(x: np.ndarray, y: np.ndarray, x0: float, y0: float,
                   x1: float, y1: float) -> np.ndarray:
    """Boolean mask of points inside the rectangle spanned by two corners (edges included)."""
    xa, xb = (x0, x1) if x0 <= x1 else (x1, x0)
    ya, yb = (y0, y1) if y0 <= y1 else (y1, y0)
    with np.errstate(invalid="ignore"):
        return (x >= xa) & (x <= xb) & (y >= ya) & (y <= yb)


def simplify_path(poly: np.ndarray, min_step: float) -> np.ndarray:
    """Drop lasso vertices closer than `min_step` to the previous kept one."""
    poly = np.asarray(poly, dtype=float).reshape(-1, 2)
    if len(poly) < 3 or min_step <= 0:
        return poly
    keep = [0]
    last = poly[0]
    for i in range(1, len(poly)):
        if abs(poly[i, 0] - last[0]) + abs(poly[i, 1] - last[1]) >= min_step:
            keep.append(i)
            last = poly[i]
    return poly[keep]


def points_in_polygon(x: np.ndarray, y: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Boolean mask of points inside a closed polygon (even-odd rule), vectorised.

    `poly` is (M, 2); the last vertex connects back to the first. Points with NaN
    coordinates are never inside.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    poly = np.asarray(poly, dtype=float).reshape(-1, 2)
    inside = np.zeros(x.shape, dtype=bool)
    if len(poly) < 3 or x.size == 0:
        return inside
    px, py = poly[:, 0], poly[:, 1]
    with np.errstate(invalid="ignore"):
        cand = np.flatnonzero((x >= px.min()) & (x <= px.max())
                              & (y >= py.min()) & (y <= py.max()))
    if cand.size == 0:
        return inside
    order = np.argsort(y[cand], kind="stable")
    idx = cand[order]
    ys = y[idx]
    xs = x[idx]
    parity = np.zeros(idx.size, dtype=bool)
    qx, qy = np.roll(px, -1), np.roll(py, -1)
    for ax, ay, bx, by in zip(px, py, qx, qy, strict=True):
        if ay == by:
            continue  # horizontal edges never cross a horizontal ray
        lo_y, hi_y = (ay, by) if ay < by else (by, ay)
        # half-open slab [lo_y, hi_y): a vertex shared by two edges is counted once
        lo = int(np.searchsorted(ys, lo_y, side="left"))
        hi = int(np.searchsorted(ys, hi_y, side="left"))
        if hi <= lo:
            continue
        t = (ys[lo:hi] - ay) / (by - ay)
        parity[lo:hi] ^= xs[lo:hi] < ax + t * (bx - ax)
    inside[idx] = parity
    return inside


def nearest_point(x: np.ndarray, y: np.ndarray, qx: float, qy: float,
                  sx: float = 1.0, sy: float = 1.0, max_dist: float = np.inf) -> int:
    """Index of the point nearest to (qx, qy), distances scaled by 1/sx, 1/sy; -1 if none.

    `sx`, `sy` are the data units per screen pixel, so `max_dist` is in pixels.
    """
    if x.size == 0:
        return -1
    with np.errstate(invalid="ignore"):
        d2 = ((x - qx) / sx) ** 2 + ((y - qy) / sy) ** 2
    d2 = np.where(np.isfinite(d2), d2, np.inf)
    i = int(np.argmin(d2))
    return i if d2[i] <= max_dist * max_dist else -1
