"""Small fixtures for the data-layer tests: real GeoTIFFs and vector files in tmp_path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from segexplain.core.sample.generate import write_sample_data

CRS_UTM = "EPSG:32633"
ORIGIN = (500000.0, 5300000.0)
RES = 0.5
TRANSFORM = from_origin(*ORIGIN, RES, RES)


def write_tif(path: Path, data: np.ndarray, *, crs: str | None = CRS_UTM,
              transform: Any = TRANSFORM, nodata: float | None = None,
              tiled: bool = False, **extra: Any) -> Path:
    """Write `data` ((H, W) or (C, H, W)) as a GeoTIFF and return its path."""
    arr = data if data.ndim == 3 else data[None]
    profile: dict[str, Any] = {
        "driver": "GTiff", "count": arr.shape[0], "height": arr.shape[1],
        "width": arr.shape[2], "dtype": arr.dtype.name, "transform": transform,
    }
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    if tiled:
        profile.update(tiled=True, blockxsize=16, blockysize=16)
    profile.update(extra)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(arr)
    return path


def write_vector(path: Path, polygons: Sequence[Any], epsg: int | None = 32633) -> Path:
    """Write shapely polygons to a GeoPackage / GeoJSON / Shapefile (by extension) with OGR."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    driver = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".json": "GeoJSON",
              ".shp": "ESRI Shapefile"}[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    srs = None
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = ds.CreateLayer("buildings", srs, ogr.wkbPolygon)
    for poly in polygons:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetGeometry(ogr.CreateGeometryFromWkb(poly.wkb))
        layer.CreateFeature(feat)
    ds = None
    return path


@pytest.fixture
def rgb_u8() -> Callable[[int, int], np.ndarray]:
    """Random uint8 RGB (3, H, W) with a fixed seed."""
    def make(height: int = 40, width: int = 48, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, (3, height, width), dtype=np.uint8)
    return make


@pytest.fixture
def square_mask() -> np.ndarray:
    """A 40 x 48 mask with one building: rows 10-19, cols 8-27."""
    mask = np.zeros((40, 48), np.uint8)
    mask[10:20, 8:28] = 1
    return mask


@pytest.fixture(scope="session")
def small_sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small sample dataset (256 px tiles, 2 per region), written once per session."""
    out = tmp_path_factory.mktemp("sample")
    write_sample_data(out, seed=0, small=True)
    return out
