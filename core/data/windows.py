"""Square patch windows over a raster grid, and their footprints (pure functions).

A `PatchWindow` is a `size` x `size` patch whose top-left pixel is (row_off, col_off);
`height` x `width` of it lie inside the image, the rest (bottom / right) is padding.
`patch_windows` covers every pixel of the image: the last row and column of windows are
padded, never dropped.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from affine import Affine
from shapely.geometry import Polygon

from ..errors import ConfigurationError, EmptyInputError


@dataclass(frozen=True)
class PatchWindow:
    """A square patch: `size` px from (row_off, col_off); `height` x `width` inside the image."""

    row_off: int
    col_off: int
    size: int
    height: int
    width: int

    @property
    def padded(self) -> bool:
        """True when part of the patch lies outside the image."""
        return self.height < self.size or self.width < self.size

    @property
    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices of the in-image part, in image pixel coordinates."""
        return (slice(self.row_off, self.row_off + self.height),
                slice(self.col_off, self.col_off + self.width))

    def to_tuple(self) -> tuple[int, int, int, int, int]:
        """(row_off, col_off, size, height, width)."""
        return self.row_off, self.col_off, self.size, self.height, self.width


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigurationError(
            f"{name} {value!r}: expected an integer number of pixels >= {minimum}")
    if int(value) < minimum:
        raise ConfigurationError(
            f"{name} {value}: expected an integer number of pixels >= {minimum}")
    return int(value)


def check_patch_params(size: object, stride: object = None) -> tuple[int, int]:
    """Validate (size, stride); stride defaults to size (no overlap)."""
    size_i = _check_int("patch size", size, 1)
    if stride is None:
        return size_i, size_i
    stride_i = _check_int("stride", stride, 1)
    if stride_i > size_i:
        raise ConfigurationError(
            f"stride {stride_i} px is larger than the patch size {size_i} px: pixels between "
            f"patches would never be seen; use a stride <= {size_i}")
    return size_i, stride_i


def _offsets(extent: int, size: int, stride: int) -> list[int]:
    n = math.ceil(max(extent - size, 0) / stride) + 1
    return [i * stride for i in range(n)]


def patch_windows(height: int, width: int, size: int,
                  stride: int | None = None) -> list[PatchWindow]:
    """Row-major windows covering a `height` x `width` image (padding at the bottom/right)."""
    size, stride = check_patch_params(size, stride)
    for name, v in (("image height", height), ("image width", width)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise ConfigurationError(f"{name} {v!r}: expected an integer number of pixels")
        if v <= 0:
            raise EmptyInputError(f"{name} {v} px: the image has no pixels; check the input file")
    return [PatchWindow(r, c, size, min(size, height - r), min(size, width - c))
            for r in _offsets(int(height), size, stride)
            for c in _offsets(int(width), size, stride)]


def window_footprint(transform: Affine, win: PatchWindow) -> Polygon:
    """Polygon of the in-image part of `win`, in the coordinates of `transform` (image CRS)."""
    r0, c0 = win.row_off, win.col_off
    r1, c1 = r0 + win.height, c0 + win.width
    corners = [(c0, r0), (c1, r0), (c1, r1), (c0, r1)]
    return Polygon([transform * (c, r) for c, r in corners])


def window_bounds(transform: Affine, win: PatchWindow) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of the in-image part of `win`."""
    minx, miny, maxx, maxy = window_footprint(transform, win).bounds
    return float(minx), float(miny), float(maxx), float(maxy)
