"""Region builders for the sample data: each fills a `Scene` with one landscape's shapes.

Training regions: `metro` (city blocks), `suburb` (houses and gardens), `farmland`
(fields, forest, farms), `alpine` (village on slopes, rock and snow), `industrial`
(halls, car parks). Held out: `informal` (dense small shacks on bare soil). Buildings are
the only positives; car parks (rows of cars), cemeteries (rows of stones), pools, roads,
trees, water and fields are negatives that share colours or shapes with roofs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import LineString, Polygon, shape

from .objects import (
    ASPHALT,
    CAR_COLOURS,
    CONCRETE,
    CONIFER,
    DRY_GRASS,
    GRASS,
    ROOFS_FLAT,
    ROOFS_METAL,
    ROOFS_TILE,
    SOIL,
    TREE,
    WATER,
    Occupancy,
    add_road,
    car_park,
    cemetery,
    local_xy,
    pick,
    pool,
    street_grid,
)
from .render import (
    BUILDING,
    OBJECT,
    Scene,
    add_building,
    add_tree,
    m,
    rect,
    smooth_noise,
)


def metro(sc: Scene) -> None:
    """Dense city blocks: perimeter buildings, courtyards, streets, a few car parks."""
    rng = sc.rng
    sc.base_rgb, sc.base_tex = CONCRETE, 0.05
    angle = rng.uniform(-0.3, 0.3)
    for bx, by, bl, bw in street_grid(sc, (m(55), m(95)), (m(12), m(22)), angle):
        sc.add(rect(bx, by, bl, bw, angle), sc.jitter(CONCRETE, 0.06), tex=0.05)
        r = rng.random()
        if r < 0.1:
            car_park(sc, bx, by, bl - m(2), bw - m(2), angle)
            continue
        if r < 0.17:
            sc.add(rect(bx, by, bl - m(2), bw - m(2), angle), sc.jitter(GRASS), blotch=0.15)
            for _ in range(int(bl * bw / m(12) ** 2)):
                tx, ty = local_xy(bx, by, angle, rng.uniform(-bl / 2, bl / 2) * 0.9,
                                rng.uniform(-bw / 2, bw / 2) * 0.9)
                add_tree(sc, tx, ty, m(rng.uniform(2.5, 4.5)))
            continue
        depth = m(rng.uniform(11, 17))
        inner_l, inner_w = bl - 2 * depth, bw - 2 * depth
        if inner_l > m(6) and inner_w > m(6):
            court = rng.random()
            colour = GRASS if court < 0.5 else CONCRETE
            sc.add(rect(bx, by, inner_l, inner_w, angle), sc.jitter(colour), blotch=0.1)
            if court < 0.5:
                for _ in range(int(rng.integers(0, 4))):
                    tx, ty = local_xy(bx, by, angle, rng.uniform(-0.3, 0.3) * inner_l,
                                    rng.uniform(-0.3, 0.3) * inner_w)
                    add_tree(sc, tx, ty, m(rng.uniform(2.5, 4)))
        for side in range(4):
            along = bl if side < 2 else bw - 2 * depth
            pos = -along / 2
            while pos < along / 2 - m(4):
                w = min(m(rng.uniform(12, 30)), along / 2 - pos)
                u = pos + w / 2
                off = (bw / 2 - depth / 2) if side < 2 else (bl / 2 - depth / 2)
                sign = 1 if side % 2 == 0 else -1
                if side < 2:
                    x, y = local_xy(bx, by, angle, u, sign * off)
                    ang = angle
                else:
                    x, y = local_xy(bx, by, angle, sign * off, u)
                    ang = angle + math.pi / 2
                flat = rng.random() < 0.6
                add_building(sc, x, y, w - m(0.3), depth, ang,
                             sc.jitter(pick(rng, ROOFS_FLAT if flat else ROOFS_TILE)),
                             roof="flat" if flat else "gable",
                             height=rng.uniform(12, 26),
                             material="membrane" if flat else "tiles")
                pos += w


def suburb(sc: Scene) -> None:
    """Houses with pitched roofs in gardens, sheds, pools, street trees, a cemetery."""
    rng = sc.rng
    sc.base_rgb, sc.base_blotch = GRASS, 0.15
    angle = rng.uniform(-0.5, 0.5)
    blocks = street_grid(sc, (m(60), m(90)), (m(8), m(11)), angle)
    cem = int(rng.integers(len(blocks))) if blocks and rng.random() < 0.5 else -1
    for bi, (bx, by, bl, bw) in enumerate(blocks):
        if bi == cem:
            cemetery(sc, bx, by, bl - m(4), bw - m(4), angle)
            continue
        for sign in (-1, 1):
            pos = -bl / 2
            while pos < bl / 2 - m(14):
                lot = m(rng.uniform(16, 24))
                u = pos + lot / 2
                hl, hw = m(rng.uniform(9, 14)), m(rng.uniform(7.5, 10.5))
                v = sign * (bw / 2 - m(5.5) - hw / 2)
                x, y = local_xy(bx, by, angle, u, v)
                sc.add(rect(*local_xy(bx, by, angle, u, sign * (bw / 4)), lot - m(0.5),
                            bw / 2 - m(0.5), angle), sc.jitter(GRASS, 0.1), tex=0.05,
                       blotch=0.15)
                dx, dy = local_xy(bx, by, angle, u + hl / 2 + m(1.8), sign * (bw / 2 - m(2.75)))
                sc.add(rect(dx, dy, m(3), m(5.5), angle), sc.jitter(CONCRETE, 0.1), tex=0.04)
                add_building(sc, x, y, hl, hw, angle, sc.jitter(pick(rng, ROOFS_TILE)),
                             roof="hip" if rng.random() < 0.3 else "gable",
                             height=rng.uniform(6, 9))
                back = sign * (bw / 2 - m(5.5) - hw - m(5))
                if rng.random() < 0.35:
                    pool(sc, *local_xy(bx, by, angle, u - m(2), back), angle)
                elif rng.random() < 0.4:
                    sx, sy = local_xy(bx, by, angle, u + m(4), back)
                    add_building(sc, sx, sy, m(3.5), m(3), angle,
                                 sc.jitter(pick(rng, ROOFS_FLAT)), roof="flat", height=2.5)
                for _ in range(int(rng.integers(0, 3))):
                    tx, ty = local_xy(bx, by, angle, u + rng.uniform(-0.4, 0.4) * lot,
                                    sign * rng.uniform(m(2), m(6)))
                    add_tree(sc, tx, ty, m(rng.uniform(2, 4)))
                pos += lot


def _fields(sc: Scene, x0: float, y0: float, x1: float, y1: float, depth: int = 0) -> None:
    """Recursively split a rectangle into striped crop parcels, meadows and woods."""
    rng = sc.rng
    w, h = x1 - x0, y1 - y0
    if depth < 4 and max(w, h) > m(60) and (depth < 2 or rng.random() < 0.6):
        if w > h:
            cut = x0 + w * rng.uniform(0.3, 0.7)
            _fields(sc, x0, y0, cut, y1, depth + 1)
            _fields(sc, cut, y0, x1, y1, depth + 1)
        else:
            cut = y0 + h * rng.uniform(0.3, 0.7)
            _fields(sc, x0, y0, x1, cut, depth + 1)
            _fields(sc, x0, cut, x1, y1, depth + 1)
        return
    r = rng.random()
    poly = rect((x0 + x1) / 2, (y0 + y1) / 2, w - m(1), h - m(1))
    if r < 0.22:
        sc.add(poly, sc.jitter(GRASS), blotch=0.15)
        for _ in range(int(w * h / m(5) ** 2)):
            add_tree(sc, rng.uniform(x0, x1), rng.uniform(y0, y1), m(rng.uniform(2.5, 4.5)),
                     rgb=CONIFER if rng.random() < 0.5 else TREE, height=12)
        return
    crop = [GRASS, DRY_GRASS, SOIL, (0.42, 0.50, 0.25), (0.65, 0.58, 0.38)]
    sc.add(poly, sc.jitter(pick(rng, crop), 0.1), tex=0.05, blotch=0.06,
           stripe=(0.0 if w > h else math.pi / 2, m(rng.uniform(1.5, 4)),
                   float(rng.uniform(0.03, 0.12))))


def _farmstead(sc: Scene, occ: Occupancy) -> None:
    """Draw a gravel yard with a farmhouse, barns and sheds where the map has room."""
    rng, size = sc.rng, sc.size
    for _ in range(10):
        fx, fy = rng.uniform(0.1, 0.9, 2) * size
        yl, yw = m(rng.uniform(40, 55)), m(rng.uniform(30, 40))
        if occ.try_take(rect(fx, fy, yl, yw).bounds, m(4)):
            break
    else:
        return
    sc.add(rect(fx, fy, yl, yw), sc.jitter((0.58, 0.55, 0.50), 0.08), tex=0.07, blotch=0.05)
    inner = Occupancy(size)
    for _ in range(int(rng.integers(2, 6))):
        ang = float(rng.choice([0.0, math.pi / 2]) + rng.normal(0, 0.03))
        big = rng.random() < 0.5
        hl, hw = (m(rng.uniform(18, 30)), m(rng.uniform(10, 14))) if big else \
            (m(rng.uniform(9, 13)), m(rng.uniform(7, 9)))
        x = fx + rng.uniform(-0.5, 0.5) * (yl - max(hl, hw))
        y = fy + rng.uniform(-0.5, 0.5) * (yw - max(hl, hw))
        if not inner.try_take(rect(x, y, hl, hw, ang).bounds, m(3)):
            continue
        add_building(sc, x, y, hl, hw, ang,
                     sc.jitter(pick(rng, ROOFS_METAL if big else ROOFS_TILE)),
                     roof="gable", height=rng.uniform(6, 10),
                     material="metal" if big else "tiles")


def farmland(sc: Scene) -> None:
    """Fields, woods, a river, a road with houses, a few farmsteads."""
    rng, size = sc.rng, sc.size
    sc.base_rgb = GRASS
    _fields(sc, -m(5), -m(5), size + m(5), size + m(5))
    t = np.linspace(-0.1, 1.1, 24) * size
    y0 = rng.uniform(0.2, 0.8) * size
    occ = Occupancy(size)
    road = np.column_stack([t, y0 + m(10) * np.sin(t / m(80))])
    add_road(sc, road, m(6), rgb=ASPHALT)
    line = LineString(road)
    occ.block_line(line, m(4.5))
    if rng.random() < 0.5:
        yr = (y0 + rng.uniform(0.35, 0.65) * size) % size
        river = LineString(np.column_stack([t, yr + m(15) * np.sin(t / m(40) + rng.uniform(0, 6))]))
        half = m(rng.uniform(5, 9))
        sc.add(river.buffer(half), sc.jitter(WATER, 0.08), tex=0.03)
        occ.block_line(river, half + m(3))
    for _ in range(int(rng.integers(2, 5)) * max(1, (size // 1024) ** 2)):
        _farmstead(sc, occ)
    for _ in range(int(size * size / m(60) ** 2)):
        d = rng.uniform(0, line.length)
        p, q = line.interpolate(d), line.interpolate(min(d + 2, line.length))
        ang = math.atan2(q.y - p.y, q.x - p.x)
        side = float(rng.choice([-1, 1]))
        off = side * m(rng.uniform(13, 24))
        x, y = p.x - math.sin(ang) * off, p.y + math.cos(ang) * off
        hl, hw = m(rng.uniform(9, 14)), m(rng.uniform(7, 10))
        if occ.try_take(rect(x, y, hl, hw, ang).bounds, m(3)):
            sc.add(rect(x, y, hl + m(8), hw + m(8), ang), sc.jitter(GRASS), blotch=0.1)
            add_building(sc, x, y, hl, hw, ang, sc.jitter(pick(rng, ROOFS_TILE)),
                         roof="hip" if rng.random() < 0.3 else "gable",
                         height=rng.uniform(6, 9))
            tx, ty = local_xy(x, y, ang, hl / 2 + m(1), side * (hw / 2 + m(2.5)))
            add_tree(sc, tx, ty, m(rng.uniform(1.8, 2.4)))


def _level_polygons(relief: np.ndarray, level: float, step: int = 8) -> list[Polygon]:
    """Smoothed polygons (pixel coordinates) of the area where `relief` exceeds `level`."""
    small = (relief[::step, ::step] > level).astype(np.uint8)
    polys = []
    for geom, _ in features.shapes(small, mask=small.astype(bool),
                                   transform=Affine.scale(step)):
        poly = shape(geom).simplify(step).buffer(step * 2).buffer(-step * 2)
        if not poly.is_empty:
            polys.append(poly)
    return polys


def alpine(sc: Scene) -> None:
    """Chalets along a winding road on green slopes, conifers, rock and snow up high."""
    rng, size = sc.rng, sc.size
    relief = (smooth_noise(rng, size, size / 5) * 25
              + np.linspace(0, 60, size, dtype=np.float32)[None, ::-1] * rng.choice([-1, 1]))
    sc.relief = relief
    sc.base_rgb, sc.base_blotch = (0.36, 0.50, 0.24), 0.18
    high = float(np.quantile(relief, 0.85))
    for level, colour in ((high, (0.55, 0.53, 0.50)), (high + 8, (0.92, 0.93, 0.95))):
        for poly in _level_polygons(relief, level):
            sc.add(poly, sc.jitter(colour, 0.05), tex=0.06, blotch=0.12)
    occ = Occupancy(size)
    t = np.linspace(-0.1, 1.1, 30) * size
    y0 = rng.uniform(0.35, 0.65) * size
    road = np.column_stack([t, y0 + m(20) * np.sin(t / m(35) + rng.uniform(0, 6))])
    add_road(sc, road, m(5.5))
    line = LineString(road)
    occ.block_line(line, m(6))
    for _ in range(int(size * size / m(20) ** 2 * 0.25)):
        d = rng.uniform(0, line.length)
        p = line.interpolate(d)
        q = line.interpolate(min(d + 2, line.length))
        ang = math.atan2(q.y - p.y, q.x - p.x)
        side = rng.choice([-1, 1]) * m(rng.uniform(10, 35))
        x, y = p.x - math.sin(ang) * side, p.y + math.cos(ang) * side
        hl, hw = m(rng.uniform(10, 16)), m(rng.uniform(8, 12))
        if not occ.try_take(rect(x, y, hl, hw, ang).bounds, m(4)):
            continue
        add_building(sc, x, y, hl, hw, ang + rng.normal(0, 0.1),
                     sc.jitter(pick(rng, ROOFS_TILE[2:] + [(0.40, 0.28, 0.20)])),
                     roof="gable", height=rng.uniform(7, 10))
    for _ in range(int(size * size / m(6) ** 2 * 0.12)):
        x, y = rng.uniform(0, size, 2)
        if relief[int(y), int(x)] < high - 10 and occ.try_take((x, y, x, y), m(3)):
            add_tree(sc, x, y, m(rng.uniform(1.8, 3.2)), rgb=CONIFER, height=10)


def _plot(sc: Scene, bx: float, by: float, u0: float, pl: float, bw: float,
          angle: float) -> None:
    """One industrial plot (u0..u0+pl along a block): a hall, then a car park or containers."""
    rng = sc.rng
    hl = pl * rng.uniform(0.55, 0.8)
    hw = bw * rng.uniform(0.55, 0.85)
    v = rng.uniform(-1, 1) * (bw - hw) / 2 * 0.5
    x, y = local_xy(bx, by, angle, u0 + m(2) + hl / 2, v)
    metal = rng.random() < 0.5
    add_building(sc, x, y, hl, hw, angle,
                 sc.jitter(pick(rng, ROOFS_METAL if metal else ROOFS_FLAT)),
                 roof="flat", height=rng.uniform(9, 16),
                 material="metal" if metal else "membrane")
    for k in range(int(rng.integers(0, 4))):  # trucks at the loading docks
        tx, ty = local_xy(bx, by, angle, u0 + m(6) + k * m(5), v + hw / 2 + m(8.5))
        sc.add(rect(tx, ty, m(2.5), m(15), angle), sc.jitter((0.85, 0.85, 0.84), 0.05),
               tex=0.02, kind=OBJECT, height=3.5)
    rest = pl - hl - m(5)
    if rest < m(14):
        return
    cu = u0 + m(2) + hl + m(2) + rest / 2
    if rng.random() < 0.6:
        car_park(sc, *local_xy(bx, by, angle, cu, 0.0), rest, bw * 0.8, angle, 0.8)
        return
    for k in range(int(bw * 0.7 // m(2.8))):  # rows of shipping containers
        for j in range(int(rest // m(12.5))):
            px, py = local_xy(bx, by, angle, cu - rest / 2 + m(6.5) + j * m(12.5),
                            -bw * 0.35 + m(1.4) + k * m(2.8))
            sc.add(rect(px, py, m(12), m(2.4), angle),
                   sc.jitter(pick(rng, CAR_COLOURS + ROOFS_METAL), 0.1),
                   tex=0.03, kind=OBJECT, height=2.6, stripe=(angle, m(0.5), 0.08))


def industrial(sc: Scene) -> None:
    """Large halls with metal or membrane roofs, yards, car parks, containers, trucks."""
    rng = sc.rng
    sc.base_rgb, sc.base_tex = (0.56, 0.55, 0.52), 0.06
    angle = rng.uniform(-0.2, 0.2)
    for bx, by, bl, bw in street_grid(sc, (m(90), m(150)), (m(14), m(20)), angle):
        sc.add(rect(bx, by, bl, bw, angle), sc.jitter(CONCRETE, 0.08), tex=0.06, blotch=0.08)
        u0 = -bl / 2
        while u0 < bl / 2 - m(30):
            pl = min(m(rng.uniform(50, 110)), bl / 2 - u0)
            _plot(sc, bx, by, u0, pl, bw - m(6), angle)
            u0 += pl
        if rng.random() < 0.5:
            for k in range(int(bl // m(9))):
                tx, ty = local_xy(bx, by, angle, -bl / 2 + m(4) + k * m(9), -bw / 2 + m(1.5))
                add_tree(sc, tx, ty, m(rng.uniform(2, 3)))


def informal(sc: Scene) -> None:
    """Dense small irregular shacks (metal sheets, tarps) on bare soil, narrow paths."""
    rng, size = sc.rng, sc.size
    sc.base_rgb, sc.base_tex, sc.base_blotch = (0.66, 0.49, 0.35), 0.07, 0.12
    sc.shadow_len = 0.35
    paths = []
    for _ in range(int(rng.integers(3, 6))):
        a, b = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
        pts = np.linspace(a, b, 8) + rng.normal(0, m(3), (8, 2))
        line = LineString(pts)
        paths.append(line.buffer(m(rng.uniform(1.5, 3))))
        sc.add(paths[-1], sc.jitter((0.72, 0.58, 0.44), 0.05), tex=0.06)
    for _ in range(int(size * size / m(10) ** 2 * 0.3)):
        x, y = rng.uniform(0, size, 2)
        sc.add(rect(x, y, m(rng.uniform(0.4, 1.0)), m(rng.uniform(0.4, 1.0)),
                    rng.uniform(0, 3)), sc.jitter(pick(rng, CAR_COLOURS), 0.2), tex=0.05,
               kind=OBJECT)
    cell = m(6.5)
    n = int(size // cell) + 1
    jj, ii = np.meshgrid(np.arange(n), np.arange(n))
    cx = (jj.ravel() + rng.uniform(0.35, 0.65, n * n)) * cell
    cy = (ii.ravel() + rng.uniform(0.35, 0.65, n * n)) * cell
    # shacks line up with their neighbours: a smooth orientation field plus jitter
    field = 0.6 * smooth_noise(rng, n, 5.0).ravel() + rng.uniform(0, math.pi)
    angle = field + rng.normal(0, 0.25, n * n)
    hl = cell * rng.uniform(0.55, 0.95, n * n) / 2
    hw = cell * rng.uniform(0.45, 0.8, n * n) / 2
    local = np.stack([np.stack([-hl, -hw], 1), np.stack([hl, -hw], 1),
                      np.stack([hl, hw], 1), np.stack([-hl, hw], 1)], 1)
    local += rng.uniform(-m(0.6), m(0.6), local.shape)
    c, s_ = np.cos(angle)[:, None], np.sin(angle)[:, None]
    corners = np.stack([cx[:, None] + local[..., 0] * c - local[..., 1] * s_,
                        cy[:, None] + local[..., 0] * s_ + local[..., 1] * c], -1)
    blocked = features.rasterize([(p.buffer(m(0.8)), 1) for p in paths],
                                 out_shape=(size, size), transform=Affine.identity(),
                                 fill=0, dtype="uint8") if paths else None
    probe = np.concatenate([corners, np.stack([cx, cy], 1)[:, None]], 1)
    rows = np.clip(probe[..., 1].astype(int), 0, size - 1)
    cols = np.clip(probe[..., 0].astype(int), 0, size - 1)
    on_path = blocked[rows, cols].any(1) if blocked is not None else np.zeros(n * n, bool)
    empty = rng.random(n * n) < 0.12
    keep = ~on_path & ~empty
    for k in np.flatnonzero(empty & ~on_path & (rng.random(n * n) < 0.05)):
        add_tree(sc, float(cx[k]), float(cy[k]), m(rng.uniform(2, 3)))
    shacks = shapely.polygons(corners[keep])
    bad = ~shapely.is_valid(shacks)
    shacks[bad] = shapely.convex_hull(shacks[bad])
    palette = np.array([(0.62, 0.64, 0.66), (0.50, 0.52, 0.54), (0.55, 0.33, 0.22),
                        (0.72, 0.73, 0.74), (0.35, 0.30, 0.28), (0.62, 0.64, 0.66),
                        (0.50, 0.40, 0.32), (0.28, 0.40, 0.60)], np.float32)
    k = int(keep.sum())
    rgb = palette[rng.integers(len(palette), size=k)] * rng.uniform(0.88, 1.12, (k, 1))
    rgb = np.clip(rgb + rng.normal(0, 0.01, (k, 3)), 0, 1)
    stripes = np.stack([rng.uniform(0, math.pi, k), np.full(k, m(0.5)), np.full(k, 0.1)], 1)
    lx, ly = sc.light
    d = m(2.5) * sc.shadow_len
    moved = corners[keep] - np.array([lx * d, ly * d])
    hulls = shapely.convex_hull(shapely.multipoints(np.concatenate([corners[keep], moved], 1)))
    sc.add_many(shacks, rgb, tex=0.06, blotch=0.05, stripes=stripes, kind=BUILDING,
                shadows=hulls)


#: region name -> builder; the last one is the held-out region.
REGIONS: dict[str, Callable[[Scene], None]] = {
    "metro": metro,
    "suburb": suburb,
    "farmland": farmland,
    "alpine": alpine,
    "industrial": industrial,
}
HELD_OUT: dict[str, Callable[[Scene], None]] = {"informal": informal}
