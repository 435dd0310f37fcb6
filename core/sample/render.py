"""Render a synthetic aerial scene (a list of coloured shapes) to an RGB image and a mask.

A `Scene` is built in pixel coordinates (x = column, y = row, 0.3 m per pixel) by the
region builders in `sample_scenes`; `render` rasterizes every shape into an id raster in
one GDAL call, then colours, textures, shades and shadows the whole tile with vectorised
numpy. The building mask is read from the same id raster, so it matches the roofs exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

#: Metres per pixel of the sample imagery.
GSD = 0.3

# Kinds of surface: what the mask says and what receives cast shadows.
GROUND, BUILDING, TREE, OBJECT = 0, 1, 2, 3


def m(metres: float) -> float:
    """Metres to pixels."""
    return metres / GSD


@dataclass
class Scene:
    """Shapes drawn in order (later shapes cover earlier ones) plus lighting."""

    size: int
    rng: np.random.Generator
    base_rgb: tuple[float, float, float]
    base_tex: float = 0.05
    base_blotch: float = 0.08
    sun_az: float = 0.0            # direction towards the sun, radians, image x/y
    shadow_len: float = 0.6        # horizontal shadow length per metre of height
    relief: np.ndarray | None = None   # (size, size) terrain height in metres, for hillshade
    geoms: list[BaseGeometry] = field(default_factory=list)
    rgb: list[tuple[float, float, float]] = field(default_factory=list)
    tex: list[float] = field(default_factory=list)
    blotch: list[float] = field(default_factory=list)
    stripe: list[tuple[float, float, float]] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    casters: list[BaseGeometry] = field(default_factory=list)

    @property
    def light(self) -> tuple[float, float]:
        """Unit vector towards the sun."""
        return math.cos(self.sun_az), math.sin(self.sun_az)

    def jitter(self, rgb: tuple[float, float, float], amount: float = 0.12,
               ) -> tuple[float, float, float]:
        """Vary a colour in brightness and slightly in hue."""
        g = self.rng.uniform(1 - amount, 1 + amount)
        c = np.asarray(rgb) * g + self.rng.normal(0, amount / 12, 3)
        r, gg, b = np.clip(c, 0.0, 1.0)
        return float(r), float(gg), float(b)

    def add(self, geom: BaseGeometry, rgb: tuple[float, float, float], *, tex: float = 0.04,
            blotch: float = 0.0, stripe: tuple[float, float, float] | None = None,
            kind: int = GROUND, height: float = 0.0) -> None:
        """Draw `geom`; `height` in metres casts a shadow; `stripe` = (angle, period, amp)."""
        if geom.is_empty:
            return
        self.geoms.append(geom)
        self.rgb.append(rgb)
        self.tex.append(tex)
        self.blotch.append(blotch)
        self.stripe.append(stripe or (0.0, 1.0, 0.0))
        self.kind.append(kind)
        if height > 0:
            self.cast(geom, height)

    def add_many(self, geoms: np.ndarray, rgb: np.ndarray, *, tex: float, blotch: float,
                 stripes: np.ndarray, kind: int, shadows: np.ndarray | None = None) -> None:
        """Draw many shapes at once: `rgb` (N, 3), `stripes` (N, 3), `shadows` polygons."""
        self.geoms.extend(geoms.tolist())
        self.rgb.extend((float(c[0]), float(c[1]), float(c[2])) for c in rgb)
        self.tex.extend([tex] * len(geoms))
        self.blotch.extend([blotch] * len(geoms))
        self.stripe.extend((float(t[0]), float(t[1]), float(t[2])) for t in stripes)
        self.kind.extend([kind] * len(geoms))
        if shadows is not None:
            self.casters.extend(shadows.tolist())

    def cast(self, geom: BaseGeometry, height: float) -> None:
        """Add the shadow that `geom`, `height` metres tall, casts on the ground."""
        lx, ly = self.light
        d = m(height) * self.shadow_len
        self.casters.append(geom.union(affinity.translate(geom, -lx * d, -ly * d)).convex_hull)


def rect(cx: float, cy: float, length: float, width: float, angle: float = 0.0) -> Polygon:
    """Make a rectangle centred on (cx, cy), `length` along direction `angle` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    pts = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
    return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts])


def _shade(scene: Scene, nx: float, ny: float, rgb: tuple[float, float, float],
           strength: float) -> tuple[float, float, float]:
    lx, ly = scene.light
    f = 1.0 + strength * (nx * lx + ny * ly)
    r, g, b = (min(1.0, v * f) for v in rgb)
    return r, g, b


def add_building(scene: Scene, cx: float, cy: float, length: float, width: float,
                 angle: float, rgb: tuple[float, float, float], *, roof: str = "gable",
                 height: float = 8.0, material: str = "tiles") -> None:
    """Draw a building with a `gable`, `hip` or `flat` roof, sun-shaded, casting a shadow."""
    c, s = math.cos(angle), math.sin(angle)
    foot = rect(cx, cy, length, width, angle)
    period, amp = (m(0.9), 0.07) if material == "metal" else (m(0.45), 0.05)
    if material == "membrane":
        amp = 0.0
    # shadow first (casters only), then the roof faces on top
    scene.cast(foot, height)
    strength = 0.32
    if roof == "flat":
        edge = tuple(v * 0.82 for v in rgb)
        scene.add(foot, (edge[0], edge[1], edge[2]), tex=0.03, kind=BUILDING)
        inner = foot.buffer(-min(m(0.6), width / 6), join_style=2)
        scene.add(inner, rgb, tex=0.04, blotch=0.05, kind=BUILDING,
                  stripe=(angle, m(2.5), 0.04) if material == "metal" else None)
        _roof_details(scene, cx, cy, length, width, angle, rgb)
        return

    def to_world(pts: list[tuple[float, float]]) -> Polygon:
        return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts])

    hl, hw = length / 2, width / 2
    # faces sloping across the width: normals are +-(-s, c)
    nx, ny = -s, c
    if roof == "hip" and length > width:
        r = hl - hw
        faces = [
            ([(-hl, -hw), (hl, -hw), (r, 0), (-r, 0)], (-nx, -ny)),
            ([(-hl, hw), (hl, hw), (r, 0), (-r, 0)], (nx, ny)),
            ([(hl, -hw), (hl, hw), (r, 0)], (c, s)),
            ([(-hl, -hw), (-hl, hw), (-r, 0)], (-c, -s)),
        ]
    else:
        faces = [
            ([(-hl, -hw), (hl, -hw), (hl, 0), (-hl, 0)], (-nx, -ny)),
            ([(-hl, 0), (hl, 0), (hl, hw), (-hl, hw)], (nx, ny)),
        ]
    for pts, (fx, fy) in faces:
        face_angle = math.atan2(fy, fx)
        scene.add(to_world(pts), _shade(scene, fx, fy, rgb, strength), tex=0.05,
                  kind=BUILDING, stripe=(face_angle + math.pi / 2, period, amp))
    ridge = to_world([(-hl + (hw if roof == "hip" else 0), -0.6),
                      (hl - (hw if roof == "hip" else 0), -0.6),
                      (hl - (hw if roof == "hip" else 0), 0.6),
                      (-hl + (hw if roof == "hip" else 0), 0.6)])
    light = (min(1.0, rgb[0] * 1.1), min(1.0, rgb[1] * 1.1), min(1.0, rgb[2] * 1.1))
    scene.add(ridge, light, tex=0.02, kind=BUILDING)


def _roof_details(scene: Scene, cx: float, cy: float, length: float, width: float,
                  angle: float, rgb: tuple[float, float, float]) -> None:
    """Skylight rows on large flat roofs, plant boxes and hatches on all of them."""
    rng = scene.rng
    c, s = math.cos(angle), math.sin(angle)

    def at(u: float, v: float) -> tuple[float, float]:
        return cx + u * c - v * s, cy + u * s + v * c

    if length > m(35) and width > m(20) and rng.random() < 0.7:
        tone = (0.80, 0.84, 0.88) if rng.random() < 0.6 else (0.25, 0.28, 0.32)
        pitch = m(rng.uniform(6, 10))
        for v in np.arange(-width / 2 + pitch, width / 2 - pitch / 2, pitch):
            scene.add(rect(*at(0.0, float(v)), length * 0.8, m(1.8), angle),
                      scene.jitter(tone, 0.04), tex=0.03, kind=BUILDING,
                      stripe=(angle, m(1.2), 0.12))
    n = int(length * width / m(12) ** 2 * rng.uniform(0.3, 1.0)) + int(rng.integers(0, 3))
    for _ in range(n):
        u = rng.uniform(-0.4, 0.4) * length
        v = rng.uniform(-0.4, 0.4) * width
        f = 1.25 if rng.random() < 0.6 else 0.7
        tone = (min(1.0, rgb[0] * f), min(1.0, rgb[1] * f), min(1.0, rgb[2] * f))
        scene.add(rect(*at(u, v), m(rng.uniform(1, 3.5)), m(rng.uniform(1, 2.5)), angle),
                  tone, tex=0.03, kind=BUILDING)


def add_tree(scene: Scene, cx: float, cy: float, radius: float,
             rgb: tuple[float, float, float] = (0.20, 0.32, 0.14), height: float = 8.0) -> None:
    """Draw a round tree crown that casts a shadow."""
    crown = _circle(cx, cy, radius)
    lx, ly = scene.light
    d = m(height) * scene.shadow_len * 0.6
    scene.casters.append(affinity.translate(crown, -lx * d, -ly * d))
    scene.add(crown, scene.jitter(rgb, 0.15), tex=0.10, blotch=0.25, kind=TREE)


def _circle(cx: float, cy: float, r: float) -> Polygon:
    n = 12 if r < 10 else 20
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return Polygon(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]))


def _upsample_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights of linear interpolation from a coarse to a fine axis."""
    pos = np.linspace(0, n_in - 1, n_out)
    i0 = np.clip(np.floor(pos).astype(int), 0, n_in - 2) if n_in > 1 else np.zeros(n_out, int)
    w = np.zeros((n_out, n_in), np.float32)
    frac = (pos - i0).astype(np.float32) if n_in > 1 else np.zeros(n_out, np.float32)
    w[np.arange(n_out), i0] = 1 - frac
    if n_in > 1:
        w[np.arange(n_out), i0 + 1] += frac
    return w


def smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std noise with features about `sigma` pixels across."""
    step = max(1, int(sigma // 2))
    n = size // step + 2
    small = rng.standard_normal((n, n), dtype=np.float32)
    small = ndimage.gaussian_filter(small, sigma / step, mode="wrap", truncate=2.5)
    if step > 1:
        up = _upsample_matrix(size, n)
        big = up @ small @ up.T
    else:
        big = small[:size, :size]
    big -= big.mean()
    return big / (big.std() + 1e-6)


def _shapes(geoms: list[BaseGeometry], values: np.ndarray | None = None,
            ) -> list[tuple[object, int]]:
    """(GeoJSON-like, value) pairs for rasterize; simple polygons skip shapely's slow path."""
    arr = np.empty(len(geoms), dtype=object)
    arr[:] = geoms
    vals = np.arange(1, len(geoms) + 1) if values is None else values
    simple = (shapely.get_type_id(arr) == 3) & (shapely.get_num_interior_rings(arr) == 0)
    out: list[tuple[object, int]] = []
    idx = np.flatnonzero(simple)
    coords = shapely.get_coordinates(arr[idx])
    ends = np.cumsum(shapely.get_num_coordinates(arr[idx]))[:-1]
    rings = np.split(coords, ends) if idx.size else []
    for i, ring in zip(idx, rings, strict=True):
        out.append(({"type": "Polygon", "coordinates": [ring.tolist()]}, int(vals[i])))
    for i in np.flatnonzero(~simple):
        out.append((arr[i], int(vals[i])))
    if values is None:  # draw order matters: later shapes cover earlier ones
        out.sort(key=lambda pair: pair[1])
    return out


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Render the scene: (rgb uint8 (3, S, S), building mask uint8 (S, S) 0/1)."""
    size, rng = scene.size, scene.rng
    ids = np.zeros((size, size), np.int32)
    if scene.geoms:
        ids = rasterize(_shapes(scene.geoms), out_shape=(size, size), fill=0,
                        transform=Affine.identity(), dtype="int32")
    rgb_t = np.array([scene.base_rgb, *scene.rgb], np.float32).reshape(-1, 3)
    tex_t = np.array([scene.base_tex, *scene.tex], np.float32)
    blotch_t = np.array([scene.base_blotch, *scene.blotch], np.float32)
    stripe_t = np.array([(0.0, 1.0, 0.0), *scene.stripe], np.float32).reshape(-1, 3)
    kind_t = np.array([GROUND, *scene.kind], np.uint8)

    img = np.stack([rgb_t[:, c][ids] for c in range(3)])  # (3, S, S), contiguous planes
    fine = rng.standard_normal((size, size), dtype=np.float32)
    medium = smooth_noise(rng, size, 3.0)
    lum = 1.0 + tex_t[ids] * fine + blotch_t[ids] * medium
    amp = stripe_t[ids, 2]
    sel = amp > 0
    if sel.any():
        yy, xx = np.nonzero(sel)
        a = stripe_t[ids[sel], 0]
        per = stripe_t[ids[sel], 1]
        phase = (xx * np.cos(a) + yy * np.sin(a)) / per * (2 * np.pi)
        lum[sel] += amp[sel] * np.sin(phase)
    kinds = kind_t[ids]
    trees = kinds == TREE
    if trees.any():
        dome = ndimage.gaussian_filter(trees.astype(np.float32), m(1.0), truncate=2.5)
        lum[trees] *= 0.65 + 0.6 * dome[trees]
    img *= lum

    if scene.casters:
        ones = np.ones(len(scene.casters), np.int64)
        shadow = rasterize(_shapes(scene.casters, ones), out_shape=(size, size), fill=0,
                           transform=Affine.identity(), dtype="uint8").astype(bool)
        shadow &= kinds != BUILDING
        shadow = ndimage.binary_opening(shadow) if shadow.any() else shadow
        for c, f in enumerate((0.40, 0.43, 0.52)):
            img[c][shadow] *= f

    light = 1.0 + 0.05 * smooth_noise(rng, size, size / 6)
    if scene.relief is not None:
        light *= _hillshade(scene.relief, scene.light)
    img *= light
    for c in range(3):  # optics: a slight blur
        img[c] = ndimage.gaussian_filter(img[c], 0.6, truncate=2.5)
    # sensor and chroma noise, so that colour alone is not a clean cue
    img += 0.015 * rng.standard_normal(img.shape, dtype=np.float32)
    img *= 255.0
    img += 0.5
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    mask = (kinds == BUILDING).astype(np.uint8)
    return out, mask


def _hillshade(relief: np.ndarray, light: tuple[float, float]) -> np.ndarray:
    gy, gx = np.gradient(relief / GSD)
    lx, ly = light
    nz = 1.0 / np.sqrt(1 + gx * gx + gy * gy)
    # light 45 degrees above the horizon
    shade = nz * (0.7071 - 0.7071 * (gx * lx + gy * ly))
    return np.clip(0.55 + 0.6 * shade, 0.5, 1.2).astype(np.float32)
