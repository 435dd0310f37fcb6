"""Points as an image, for views that hold too many points to draw one by one (no Qt).

The latent scatter draws at most a few thousand points in view as dots; above that it
draws this module's images (see `point_cloud`). The view is cut into square cells of a
few screen pixels; each point falls into one cell and spreads over the cells its dot
would cover (a box of `2 * spread + 1` cells). A cell's colour is the mean palette colour
of the points over it, and its opacity grows with their number (log scale), so dense
regions read as dense where dots would all overlap. The selection drawn over such an
image is a tint over the cells of the selected points with a dark outline around them.
"""

from __future__ import annotations

import numpy as np

#: Opacity of a cell covered by one point; the densest cell of the view is opaque.
MIN_ALPHA = 0.45
#: Selection over a density image: tint inside, outline around (RGBA).
MARK_FILL = (20, 20, 20, 70)
MARK_RING = (20, 20, 20, 235)


def cell_index(fx: np.ndarray, fy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Flat cell index (row-major, `width` cells a row) of positions in cell units; -1 outside.

    `fx`, `fy` are overwritten (they are the caller's temporaries: a million points
    make every extra pass count).
    """
    np.clip(fx, -1.0, float(width), out=fx)
    np.clip(fy, -1.0, float(height), out=fy)
    fx += 1.0
    fy += 1.0
    with np.errstate(invalid="ignore"):  # NaN: never inside
        ix = fx.astype(np.int32)
        iy = fy.astype(np.int32)
    ix -= 1
    iy -= 1
    inside = (ix.view(np.uint32) < width) & (iy.view(np.uint32) < height)
    lin = iy.astype(np.int64)
    lin *= width
    lin += ix
    lin[~inside] = -1
    return lin


def box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1) x (2r+1) box around each cell of a 2-D array (zeros outside)."""
    if r <= 0:
        return a
    h, w = a.shape
    p = np.zeros((h + 2 * r + 1, w + 2 * r + 1), dtype=np.float64)
    p[r + 1:r + 1 + h, r + 1:r + 1 + w] = a
    c = p.cumsum(0).cumsum(1)
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def density_rgba(cells: np.ndarray, rgb: np.ndarray, codes: np.ndarray, width: int,
                 height: int, spread: int = 1) -> np.ndarray:
    """(height, width, 4) uint8 image of points in `cells` coloured `rgb[codes]`.

    `cells`: flat cell index per point (-1: outside, skipped); `rgb`: (K, 3) palette.
    """
    ok = cells >= 0
    if not ok.all():
        cells, codes = cells[ok], np.asarray(codes)[ok]
    size = width * height
    count = box_sum(np.bincount(cells, minlength=size).reshape(height, width)
                    .astype(np.float64), spread)
    out = np.zeros((height, width, 4), dtype=np.uint8)
    filled = count > 0.5
    if not filled.any():
        return out
    pal = np.asarray(rgb, dtype=np.float64).reshape(-1, 3)
    for ch in range(3):
        s = box_sum(np.bincount(cells, weights=pal[codes, ch], minlength=size)
                    .reshape(height, width), spread)
        out[..., ch][filled] = np.clip(np.rint(s[filled] / count[filled]), 0, 255)
    level = np.log1p(count[filled]) / np.log1p(count.max())
    out[..., 3][filled] = np.rint(255 * (MIN_ALPHA + (1 - MIN_ALPHA) * level))
    return out


def premultiplied_bgra(rgba: np.ndarray, scale: int = 1) -> np.ndarray:
    """RGBA pixels as Qt's ARGB32_Premultiplied bytes (B, G, R, A), each `scale` x `scale`.

    The layout Qt's raster engine blends fastest, drawn without conversion or scaling.
    """
    a = rgba[..., 3].astype(np.uint16)
    out = np.empty(rgba.shape, dtype=np.uint8)
    for ch in range(3):
        out[..., 2 - ch] = (rgba[..., ch].astype(np.uint16) * a + 127) // 255
    out[..., 3] = rgba[..., 3]
    if scale > 1:
        out = np.repeat(np.repeat(out, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(out)


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """A 2-D boolean mask grown by `r` cells in every direction (a square)."""
    out = mask.copy()
    for _ in range(max(0, r)):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        out = grown.copy()
        out[:, 1:] |= grown[:, :-1]
        out[:, :-1] |= grown[:, 1:]
    return out


def marks_rgba(cells: np.ndarray, width: int, height: int, spread: int = 1,
               fill: tuple[int, int, int, int] = MARK_FILL,
               ring: tuple[int, int, int, int] = MARK_RING) -> np.ndarray:
    """(height, width, 4) uint8 image marking the cells of `cells` (-1 skipped).

    The cells the points' dots cover are tinted `fill`; the cells just around them
    (one cell wide) are drawn `ring`, so the selection shows over any density image.
    """
    hit = np.zeros(width * height, dtype=bool)
    hit[cells[cells >= 0]] = True
    region = dilate(hit.reshape(height, width), spread)
    around = dilate(region, 1) & ~region
    out = np.zeros((height, width, 4), dtype=np.uint8)
    out[region] = fill
    out[around] = ring
    return out
