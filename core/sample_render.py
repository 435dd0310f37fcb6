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
        """A colour varied in brightness and slightly in hue."""
        g = self.rng.uniform(1 - amount, 1 + amount)
        c = np.asarray(rgb) * g + self.rng.normal(0, amount / 5, 3)
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
            lx, ly = self.light
            d = m(height) * self.shadow_len
            moved = affinity.translate(geom, -lx * d, -ly * d)
            self.casters.append(geom.union(moved).convex_hull)


def rect(cx: float, cy: float, length: float, width: float, angle: float = 0.0) -> Polygon:
    """A rectangle centred on (cx, cy), `length` along direction `angle` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    pts = [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
    return Polygon([(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts])


def quad(cx: float, cy: float, length: float, width: float, angle: float,
         wobble: float, rng: np.random.Generator) -> Polygon:
    """An irregular quadrilateral: a rectangle whose corners are moved by up to `wobble`."""
    c, s = math.cos(angle), math.sin(angle)
    hl, hw = length / 2, width / 2
    pts = []
    for x, y in [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]:
        x += rng.uniform(-wobble, wobble)
        y += rng.uniform(-wobble, wobble)
        pts.append((cx + x * c - y * s, cy + x * s + y * c))
    poly = Polygon(pts)
    return poly if poly.is_valid else poly.convex_hull


def _shade(scene: Scene, nx: float, ny: float, rgb: tuple[float, float, float],
           strength: float) -> tuple[float, float, float]:
    lx, ly = scene.light
    f = 1.0 + strength * (nx * lx + ny * ly)
    r, g, b = (min(1.0, v * f) for v in rgb)
    return r, g, b


def add_building(scene: Scene, cx: float, cy: float, length: float, width: float,
                 angle: float, rgb: tuple[float, float, float], *, roof: str = "gable",
                 height: float = 8.0, material: str = "tiles") -> None:
    """A building with a `gable`, `hip` or `flat` roof, shaded by the sun, casting a shadow."""
    c, s = math.cos(angle), math.sin(angle)
    foot = rect(cx, cy, length, width, angle)
    period, amp = (m(0.9), 0.07) if material == "metal" else (m(0.45), 0.05)
    if material == "membrane":
        amp = 0.0
    # shadow first (casters only), then the roof faces on top
    lx, ly = scene.light
    d = m(height) * scene.shadow_len
    scene.casters.append(foot.union(affinity.translate(foot, -lx * d, -ly * d)).convex_hull)
    strength = 0.32
    if roof == "flat":
        edge = tuple(v * 0.82 for v in rgb)
        scene.add(foot, (edge[0], edge[1], edge[2]), tex=0.03, kind=BUILDING)
        inner = foot.buffer(-min(m(0.6), width / 6), join_style=2)
        scene.add(inner, rgb, tex=0.04, blotch=0.05, kind=BUILDING,
                  stripe=(angle, m(2.5), 0.04) if material == "metal" else None)
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
    scene.add(ridge, tuple(min(1.0, v * 1.1) for v in rgb), tex=0.02, kind=BUILDING)  # type: ignore[arg-type]


def add_tree(scene: Scene, cx: float, cy: float, radius: float,
             rgb: tuple[float, float, float] = (0.20, 0.32, 0.14), height: float = 8.0) -> None:
    """A round tree crown that casts a shadow."""
    crown = _circle(cx, cy, radius)
    scene.add(crown, scene.jitter(rgb, 0.15), tex=0.10, blotch=0.25, kind=TREE, height=height)


def _circle(cx: float, cy: float, r: float) -> Polygon:
    n = 12 if r < 10 else 20
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return Polygon(np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)]))


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std noise with features about `sigma` pixels across."""
    step = max(1, int(sigma // 2))
    small = rng.standard_normal((size // step + 2, size // step + 2)).astype(np.float32)
    small = ndimage.gaussian_filter(small, sigma / step, mode="wrap")
    big = ndimage.zoom(small, step, order=1)[:size, :size] if step > 1 else small[:size, :size]
    big -= big.mean()
    return big / (big.std() + 1e-6)


def render(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """The scene as (rgb uint8 (3, S, S), building mask uint8 (S, S) 0/1)."""
    size, rng = scene.size, scene.rng
    shapes = ((g, i + 1) for i, g in enumerate(scene.geoms))
    ids = rasterize(shapes, out_shape=(size, size), fill=0, transform=Affine.identity(),
                    dtype="int32") if scene.geoms else np.zeros((size, size), np.int32)
    rgb_t = np.array([scene.base_rgb, *scene.rgb], np.float32).reshape(-1, 3)
    tex_t = np.array([scene.base_tex, *scene.tex], np.float32)
    blotch_t = np.array([scene.base_blotch, *scene.blotch], np.float32)
    stripe_t = np.array([(0.0, 1.0, 0.0), *scene.stripe], np.float32).reshape(-1, 3)
    kind_t = np.array([GROUND, *scene.kind], np.uint8)

    img = rgb_t[ids]
    fine = rng.standard_normal((size, size), dtype=np.float32)
    medium = _smooth_noise(rng, size, 3.0)
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
        dist = ndimage.distance_transform_edt(trees)
        lum[trees] *= 0.72 + 0.4 * np.clip(dist[trees] / m(2.0), 0, 1)
    img *= lum[..., None]
    # chroma noise so that colour alone is not a clean cue
    img += 0.012 * rng.standard_normal((size, size, 3), dtype=np.float32)

    if scene.casters:
        shadow = rasterize(((g, 1) for g in scene.casters), out_shape=(size, size), fill=0,
                           transform=Affine.identity(), dtype="uint8").astype(bool)
        shadow &= kinds != BUILDING
        shadow = ndimage.binary_opening(shadow) if shadow.any() else shadow
        img[shadow] *= np.array([0.40, 0.43, 0.52], np.float32)

    drift = _smooth_noise(rng, size, size / 6)
    img *= (1.0 + 0.05 * drift)[..., None]
    if scene.relief is not None:
        img *= _hillshade(scene.relief, scene.light)[..., None]
    img = ndimage.gaussian_filter(img, sigma=(0.6, 0.6, 0))
    img += 0.01 * rng.standard_normal(img.shape, dtype=np.float32)
    out = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(2, 0, 1)
    mask = (kinds == BUILDING).astype(np.uint8)
    return np.ascontiguousarray(out), mask


def _hillshade(relief: np.ndarray, light: tuple[float, float]) -> np.ndarray:
    gy, gx = np.gradient(relief / GSD)
    lx, ly = light
    nz = 1.0 / np.sqrt(1 + gx * gx + gy * gy)
    # light 45 degrees above the horizon
    shade = nz * (0.7071 - 0.7071 * (gx * lx + gy * ly))
    return np.clip(0.55 + 0.6 * shade, 0.5, 1.2).astype(np.float32)
