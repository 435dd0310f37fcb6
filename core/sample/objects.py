"""Building blocks of the sample scenes: palettes, streets, car parks, cemeteries, pools.

Everything is drawn onto a `Scene` in pixel coordinates (0.3 m per pixel); `m(x)` turns
metres into pixels. Car parks (rows of cars) and cemeteries (rows of stones) are the
negatives that look most like buildings: rows of small rectangles.
"""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import LineString

from .render import OBJECT, Scene, m, rect

RGB = tuple[float, float, float]

GRASS: RGB = (0.34, 0.45, 0.22)
DRY_GRASS: RGB = (0.55, 0.54, 0.34)
SOIL: RGB = (0.50, 0.41, 0.30)
ASPHALT: RGB = (0.30, 0.30, 0.31)
CONCRETE: RGB = (0.60, 0.59, 0.56)
WATER: RGB = (0.11, 0.20, 0.24)
TREE: RGB = (0.19, 0.31, 0.14)
CONIFER: RGB = (0.15, 0.26, 0.13)
ROOFS_TILE: list[RGB] = [(0.62, 0.30, 0.22), (0.55, 0.26, 0.20), (0.45, 0.30, 0.22),
                         (0.30, 0.31, 0.33), (0.22, 0.22, 0.24), (0.58, 0.40, 0.30)]
ROOFS_FLAT: list[RGB] = [(0.62, 0.62, 0.62), (0.70, 0.66, 0.58), (0.80, 0.80, 0.78),
                         (0.40, 0.40, 0.42), (0.52, 0.47, 0.42), (0.40, 0.55, 0.48)]
ROOFS_METAL: list[RGB] = [(0.72, 0.74, 0.76), (0.35, 0.45, 0.58), (0.55, 0.57, 0.60),
                          (0.60, 0.30, 0.25), (0.85, 0.86, 0.86)]
CAR_COLOURS: list[RGB] = [(0.85, 0.85, 0.85), (0.10, 0.10, 0.12), (0.55, 0.56, 0.58),
                          (0.60, 0.12, 0.10), (0.15, 0.25, 0.50), (0.75, 0.75, 0.70)]


def pick(rng: np.random.Generator, options: list[RGB]) -> RGB:
    """Pick one colour of `options`."""
    return options[int(rng.integers(len(options)))]


class Occupancy:
    """A coarse grid of taken cells, to place objects without overlap."""

    def __init__(self, size: int, cell: int = 4) -> None:
        self.cell = cell
        self.grid = np.zeros((size // cell + 2, size // cell + 2), bool)

    def _slices(self, bounds: tuple[float, float, float, float],
                margin: float) -> tuple[slice, slice]:
        x0, y0, x1, y1 = bounds
        c, n = self.cell, self.grid.shape[0]
        i0 = min(max(int((y0 - margin) // c), 0), n)
        i1 = min(max(int((y1 + margin) // c) + 1, 0), n)
        j0 = min(max(int((x0 - margin) // c), 0), n)
        j1 = min(max(int((x1 + margin) // c) + 1, 0), n)
        return slice(i0, i1), slice(j0, j1)

    def block_line(self, line: LineString, half_width: float) -> None:
        """Mark every cell within about `half_width` of `line` as taken."""
        step = max(self.cell, half_width / 2)
        for d in np.arange(0.0, line.length + step, step):
            p = line.interpolate(min(d, line.length))
            self.grid[self._slices((p.x, p.y, p.x, p.y), half_width)] = True

    def try_take(self, bounds: tuple[float, float, float, float], margin: float = 0.0) -> bool:
        """Take the cells under `bounds` (+ margin) when all are free."""
        sl = self._slices(bounds, margin)
        if self.grid[sl].any():
            return False
        self.grid[self._slices(bounds, 0.0)] = True
        return True


def car_park(sc: Scene, cx: float, cy: float, length: float, width: float,
              angle: float, fill: float = 0.7) -> None:
    """Asphalt with rows of parked cars (small rectangles: not buildings)."""
    rng = sc.rng
    sc.add(rect(cx, cy, length, width, angle), sc.jitter(ASPHALT, 0.08), tex=0.05)
    c, s = math.cos(angle), math.sin(angle)
    slot_w, car_l = m(2.6), m(4.6)
    row_pitch = m(15.0)
    rows = int((width - m(2)) // row_pitch) * 2 + 1
    cols = int((length - m(2)) // slot_w)
    for r in range(rows):
        v = -width / 2 + m(3.5) + (r // 2) * row_pitch + (r % 2) * (car_l + m(0.4))
        if v > width / 2 - m(2.5):
            break
        for k in range(cols):
            u = -length / 2 + m(1.5) + (k + 0.5) * slot_w
            line = rect(cx + u * c - (v - m(2.3)) * s, cy + u * s + (v - m(2.3)) * c,
                        m(0.15), car_l, angle)
            sc.add(line, (0.80, 0.80, 0.78), tex=0.02)
            if rng.random() > fill:
                continue
            px, py = cx + (u + slot_w / 2) * c - (v - m(2.3)) * s, \
                cy + (u + slot_w / 2) * s + (v - m(2.3)) * c
            sc.add(rect(px, py, m(1.8), m(4.4), angle), sc.jitter(pick(rng, CAR_COLOURS), 0.1),
                   tex=0.03, kind=OBJECT, height=1.5)


def cemetery(sc: Scene, cx: float, cy: float, length: float, width: float,
              angle: float) -> None:
    """Grass with rows of small grave stones and gravel paths (not buildings)."""
    rng = sc.rng
    sc.add(rect(cx, cy, length, width, angle), sc.jitter(GRASS, 0.08), tex=0.06, blotch=0.1)
    c, s = math.cos(angle), math.sin(angle)
    for v in np.arange(-width / 2 + m(2), width / 2 - m(1.5), m(3.2)):
        for u in np.arange(-length / 2 + m(2), length / 2 - m(1.5), m(1.8)):
            if rng.random() < 0.15:
                continue
            tone = float(rng.uniform(0.62, 0.92))
            sc.add(rect(cx + u * c - v * s, cy + u * s + v * c, m(1.0), m(2.0), angle),
                   (tone, tone, tone * 0.97), tex=0.04, kind=OBJECT, height=0.8)
    sc.add(rect(cx, cy, length, m(2.0), angle), (0.68, 0.64, 0.58), tex=0.06)


def pool(sc: Scene, cx: float, cy: float, angle: float) -> None:
    """Draw a garden swimming pool (not a building)."""
    sc.add(rect(cx, cy, m(sc.rng.uniform(5, 9)), m(sc.rng.uniform(3, 4.5)), angle),
           sc.jitter((0.30, 0.62, 0.72), 0.08), tex=0.03, kind=OBJECT)


def add_road(sc: Scene, pts: np.ndarray, width: float, rgb: RGB = ASPHALT,
             marking: bool = False) -> None:
    """Draw a road along `pts` with kerbs and, optionally, a centre line."""
    line = LineString(pts)
    sc.add(line.buffer(width / 2 + m(1.2), cap_style=2), sc.jitter(CONCRETE, 0.05), tex=0.04)
    sc.add(line.buffer(width / 2, cap_style=2), sc.jitter(rgb, 0.05), tex=0.05)
    if marking:
        sc.add(line.buffer(m(0.12), cap_style=2), (0.85, 0.85, 0.80), tex=0.02)


def street_grid(sc: Scene, block: tuple[float, float], street: tuple[float, float],
          angle: float) -> list[tuple[float, float, float, float]]:
    """Streets of a rotated grid; returns blocks as (cx, cy, length, width) in world px."""
    rng, size = sc.rng, sc.size
    c, s = math.cos(angle), math.sin(angle)
    half = size * 0.75

    def cuts() -> list[tuple[float, float]]:
        out, pos = [], -half - rng.uniform(0, block[1])
        while pos < half:
            w = rng.uniform(*street)
            out.append((pos, pos + w))
            pos += w + rng.uniform(*block)
        return out

    xs, ys = cuts(), cuts()
    cx0, cy0 = size / 2, size / 2
    for a, b in xs:
        u = (a + b) / 2
        add_road(sc, np.array([(cx0 + u * c + t * -s, cy0 + u * s + t * c) for t in (-half, half)]),
              b - a, marking=b - a > m(13))
    for a, b in ys:
        v = (a + b) / 2
        add_road(sc, np.array([(cx0 + t * c - v * s, cy0 + t * s + v * c) for t in (-half, half)]),
              b - a, marking=b - a > m(13))
    blocks = []
    for (_, xa), (xb, _) in zip(xs[:-1], xs[1:], strict=True):
        for (_, ya), (yb, _) in zip(ys[:-1], ys[1:], strict=True):
            u, v = (xa + xb) / 2, (ya + yb) / 2
            wx, wy = cx0 + u * c - v * s, cy0 + u * s + v * c
            if -m(80) < wx < size + m(80) and -m(80) < wy < size + m(80):
                blocks.append((wx, wy, xb - xa - m(2.4), yb - ya - m(2.4)))
    return blocks


def local_xy(cx: float, cy: float, angle: float, u: float, v: float) -> tuple[float, float]:
    """Map (u, v) in a frame centred on (cx, cy) and rotated by `angle` to pixels."""
    c, s = math.cos(angle), math.sin(angle)
    return cx + u * c - v * s, cy + u * s + v * c
