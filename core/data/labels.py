"""Building labels on an image's pixel grid: raster masks and vector footprints.

Raster labels must share the image's CRS, transform and size; their values are a mask
(0/1 or 0/255) or class ids with `building_value`. Vector labels (GeoPackage, GeoJSON,
Shapefile, read with GDAL's OGR) are reprojected to the image CRS when needed and
rasterized window by window, so memory does not grow with the image.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import RasterioIOError
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely import wkb
from shapely.geometry import box

from ..errors import (
    DependencyError,
    GridMismatchError,
    LabelValueError,
    MissingCRSError,
    NoOverlapError,
    UnreadableFileError,
)
from .datasets import is_vector
from .windows import PatchWindow, window_bounds

#: Largest number of pixels checked in full when a raster label is opened.
_FULL_CHECK_PIXELS = 64_000_000


class Grid:
    """The pixel grid labels are drawn on: CRS, transform, width, height."""

    def __init__(self, crs: CRS, transform: Affine, width: int, height: int) -> None:
        self.crs, self.transform, self.width, self.height = crs, transform, width, height


def to_mask(values: np.ndarray, path: Path | str, building_value: int | None) -> np.ndarray:
    """Label values -> uint8 0/1; raises LabelValueError for values that are not a mask."""
    if building_value is not None:
        return (values == building_value).astype(np.uint8)
    bad = (values != 0) & (values != 1) & (values != 255)
    if bad.any():
        found = np.unique(values)
        shown = ", ".join(str(v) for v in found[:8]) + (" ..." if found.size > 8 else "")
        raise LabelValueError(
            f"label {path}: values {{{shown}}} are not a building mask (expected 0/1 or "
            f"0/255); pass building_value (--building-value N) to pick the building class")
    ones = values == 1
    if ones.any() and (values == 255).any():
        raise LabelValueError(
            f"label {path}: mixes values 1 and 255; expected 0/1 or 0/255; pass "
            f"building_value to pick one class")
    return (values > 0).astype(np.uint8)


class RasterLabel:
    """A label raster on the image grid; `read(win)` is safe from several threads."""

    def __init__(self, path: Path, grid: Grid, building_value: int | None = None) -> None:
        self.path = Path(path)
        self.building_value = building_value
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        ds = self._dataset()
        if ds.crs is None:
            raise MissingCRSError(
                f"label {self.path}: has no CRS; it must be on the image grid ({grid.crs}); "
                f"assign the CRS (gdal_edit.py -a_srs) or re-export it")
        if ds.crs != grid.crs:
            raise GridMismatchError(
                f"label {self.path}: CRS {ds.crs} differs from the image's {grid.crs}; "
                f"reproject the label onto the image grid (gdalwarp)")
        if (ds.width, ds.height) != (grid.width, grid.height):
            raise GridMismatchError(
                f"label {self.path}: size {ds.width}x{ds.height} px differs from the image's "
                f"{grid.width}x{grid.height} px; resample it onto the image grid (gdalwarp)")
        tol = 1e-3 * max(abs(grid.transform.a), abs(grid.transform.e), 1e-12)
        if not np.allclose(tuple(ds.transform)[:6], tuple(grid.transform)[:6], rtol=0, atol=tol):
            raise GridMismatchError(
                f"label {self.path}: transform {tuple(ds.transform)[:6]} differs from the "
                f"image's {tuple(grid.transform)[:6]}; align it with gdalwarp -te/-tr")
        self.nodata = ds.nodata
        self._check_values(ds)

    def _dataset(self) -> Any:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            try:
                ds = rasterio.open(self.path)
            except RasterioIOError as exc:
                raise UnreadableFileError(
                    f"label {self.path}: not a readable raster ({exc}); check the file") from exc
            with self._lock:
                self._handles.append(ds)
            self._local.ds = ds
        return ds

    def _check_values(self, ds: Any) -> None:
        if ds.width * ds.height <= _FULL_CHECK_PIXELS:
            values = ds.read(1)
        else:
            f = int(np.ceil(np.sqrt(ds.width * ds.height / _FULL_CHECK_PIXELS)))
            values = ds.read(1, out_shape=(ds.height // f, ds.width // f))
        if self.nodata is not None:
            values = values[values != self.nodata]
        to_mask(values, self.path, self.building_value)

    def read(self, win: PatchWindow) -> tuple[np.ndarray, np.ndarray | None]:
        """(mask uint8 (size, size) 0/1, label-valid bool or None) for `win`; padding is 0."""
        ds = self._dataset()
        vals = ds.read(1, window=Window(win.col_off, win.row_off, win.width, win.height))
        out = np.zeros((win.size, win.size), np.uint8)
        valid = None
        if self.nodata is not None:
            ok = vals != self.nodata
            if not ok.all():
                valid = np.zeros((win.size, win.size), bool)
                valid[:win.height, :win.width] = ok
                vals = np.where(ok, vals, 0)
        out[:win.height, :win.width] = to_mask(vals, self.path, self.building_value)
        return out, valid

    def close(self) -> None:
        """Close every handle opened by any thread."""
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()


class VectorLabel:
    """Building footprints from a vector file, rasterized per window onto the image grid."""

    def __init__(self, path: Path, grid: Grid) -> None:
        self.path = Path(path)
        self.grid = grid
        geoms = _read_vector(self.path, grid.crs)
        left, bottom, right, top = rasterio.transform.array_bounds(
            grid.height, grid.width, grid.transform)
        extent = box(left, bottom, right, top)
        self.geoms = [g for g in geoms if g.intersects(extent)]
        if not self.geoms:
            raise NoOverlapError(
                f"label {self.path}: none of its {len(geoms)} features overlap the image "
                f"(extent {left:.1f}, {bottom:.1f}, {right:.1f}, {top:.1f} in {grid.crs}); "
                f"check that label and image show the same place")
        self.bounds = np.array([g.bounds for g in self.geoms], dtype=np.float64)

    def read(self, win: PatchWindow) -> tuple[np.ndarray, None]:
        """(mask uint8 (size, size) 0/1, None) for `win`; padding is 0."""
        xmin, ymin, xmax, ymax = window_bounds(self.grid.transform, win)
        b = self.bounds
        hit = np.flatnonzero((b[:, 0] <= xmax) & (b[:, 2] >= xmin)
                             & (b[:, 1] <= ymax) & (b[:, 3] >= ymin))
        out = np.zeros((win.size, win.size), np.uint8)
        if hit.size:
            t = self.grid.transform * Affine.translation(win.col_off, win.row_off)
            out[:win.height, :win.width] = rasterize(
                ((self.geoms[i], 1) for i in hit), out_shape=(win.height, win.width),
                transform=t, fill=0, dtype="uint8")
        return out, None

    def close(self) -> None:
        """Nothing to release (geometries live in memory)."""


def _read_vector(path: Path, crs: CRS) -> list[Any]:
    try:
        from osgeo import ogr, osr
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DependencyError(
            f"label {path}: vector labels need GDAL's Python bindings (osgeo), missing here: "
            "install python3-gdal (Debian) or the GDAL wheel matching your libgdal, or "
            "rasterise the labels first") from exc

    ogr.UseExceptions()
    osr.UseExceptions()
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise UnreadableFileError(
            f"label {path}: not a readable vector file ({exc}); expected GeoPackage, "
            f"GeoJSON or Shapefile") from exc
    if ds is None or ds.GetLayerCount() == 0:
        raise UnreadableFileError(
            f"label {path}: not a readable vector file (no layer found); expected "
            f"GeoPackage, GeoJSON or Shapefile")
    layer = ds.GetLayer(0)
    src = layer.GetSpatialRef()
    if src is None:
        raise MissingCRSError(
            f"label {path}: has no CRS; set it (ogr2ogr -a_srs EPSG:xxxx) so that it can be "
            f"placed on the image")
    dst = osr.SpatialReference()
    dst.ImportFromWkt(crs.to_wkt())
    for sr in (src, dst):
        sr.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    transform = None if src.IsSame(dst) else osr.CoordinateTransformation(src, dst)
    geoms = []
    for feat in layer:
        g = feat.GetGeometryRef()
        if g is None or g.IsEmpty():
            continue
        g = g.Clone()
        if transform is not None:
            g.Transform(transform)
        geom = wkb.loads(bytes(g.ExportToWkb()))
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            continue
        if not geom.is_valid:
            geom = geom.buffer(0)
        geoms.append(geom)
    ds = None
    return geoms


def open_label(path: Path | str, grid: Grid,
               building_value: int | None = None) -> RasterLabel | VectorLabel:
    """Open a raster or vector label and check it against `grid` (InputError subclasses)."""
    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(f"label {p}: no such file; check the path")
    if is_vector(p):
        return VectorLabel(p, grid)
    return RasterLabel(p, grid, building_value)
