import numpy as np
import pytest
import shapely
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.transform import from_origin
from segexplain.core.data.labels import Grid, RasterLabel, VectorLabel, open_label, to_mask
from segexplain.core.data.windows import PatchWindow, patch_windows
from segexplain.core.errors import (
    GridMismatchError,
    LabelValueError,
    MissingCRSError,
    NoOverlapError,
    UnreadableFileError,
)
from shapely.geometry import Polygon, box

from .conftest import CRS_UTM, ORIGIN, RES, TRANSFORM, write_tif, write_vector

GRID = Grid(CRS.from_string(CRS_UTM), TRANSFORM, 48, 40)
FULL = PatchWindow(0, 0, 48, 40, 48)


def stitched(label, height=40, width=48, size=16):
    out = np.full((height, width), 9, np.uint8)
    for w in patch_windows(height, width, size):
        mask, _ = label.read(w)
        assert mask.shape == (size, size)
        assert (mask[w.height:, :] == 0).all() and (mask[:, w.width:] == 0).all()
        out[w.slices] = mask[:w.height, :w.width]
    return out


def building_box(row0, row1, col0, col1):
    x0, y0 = ORIGIN
    return box(x0 + col0 * RES, y0 - row1 * RES, x0 + col1 * RES, y0 - row0 * RES)


@pytest.mark.parametrize("scale", [1, 255])
def test_raster_mask_0_1_and_0_255(tmp_path, square_mask, scale):
    path = write_tif(tmp_path / "gt.tif", (square_mask * scale).astype(np.uint8))
    label = open_label(path, GRID)
    assert isinstance(label, RasterLabel)
    assert (stitched(label) == square_mask).all()
    label.close()


def test_class_ids_with_building_value(tmp_path, square_mask):
    classes = np.where(square_mask == 1, 6, 2).astype(np.uint8)
    classes[0, 0] = 7
    path = write_tif(tmp_path / "classes.tif", classes)
    with pytest.raises(LabelValueError) as err:
        open_label(path, GRID)
    msg = str(err.value)
    assert "classes.tif" in msg and "values {2, 6, 7}" in msg and "building_value" in msg
    assert (stitched(open_label(path, GRID, building_value=6)) == square_mask).all()


def test_label_values_error_lists_the_values(tmp_path):
    values = np.zeros((40, 48), np.uint8)
    values[1, 1], values[2, 2] = 3, 7
    path = write_tif(tmp_path / "lab.tif", values)
    with pytest.raises(LabelValueError, match=r"lab.tif: values \{0, 3, 7\} are not a building"):
        open_label(path, GRID)


def test_to_mask_rejects_mixed_1_and_255():
    with pytest.raises(LabelValueError, match="mixes values 1 and 255"):
        to_mask(np.array([0, 1, 255], np.uint8), "x.tif", None)


def test_label_nodata_is_reported_as_invalid(tmp_path, square_mask):
    values = square_mask.copy()
    values[:, 40:] = 99
    path = write_tif(tmp_path / "lab.tif", values, nodata=99)
    label = open_label(path, GRID)
    mask, valid = label.read(PatchWindow(0, 32, 32, 32, 16))
    assert valid is not None
    assert valid[:, :8].all() and not valid[:, 8:].any()
    assert (mask[:, 8:] == 0).all()


def test_grid_mismatches(tmp_path, square_mask):
    other_crs = write_tif(tmp_path / "crs.tif", square_mask, crs="EPSG:32632")
    with pytest.raises(GridMismatchError,
                       match=r"crs.tif: CRS EPSG:32632 differs from the image's EPSG:32633"):
        open_label(other_crs, GRID)
    small = write_tif(tmp_path / "size.tif", square_mask[:30])
    with pytest.raises(GridMismatchError, match=r"size.tif: size 48x30 px differs .* 48x40 px"):
        open_label(small, GRID)
    shifted = write_tif(tmp_path / "shift.tif", square_mask,
                        transform=from_origin(ORIGIN[0] + 10, ORIGIN[1], RES, RES))
    with pytest.raises(GridMismatchError, match="shift.tif: transform .* differs"):
        open_label(shifted, GRID)


def test_missing_crs_and_unreadable(tmp_path, square_mask):
    no_crs = write_tif(tmp_path / "nocrs.tif", square_mask, crs=None)
    with pytest.raises(MissingCRSError, match="nocrs.tif: has no CRS"):
        open_label(no_crs, GRID)
    junk = tmp_path / "junk.tif"
    junk.write_text("not a tiff")
    with pytest.raises(UnreadableFileError, match="junk.tif: not a readable raster"):
        open_label(junk, GRID)
    with pytest.raises(UnreadableFileError, match="gone.tif: no such file"):
        open_label(tmp_path / "gone.tif", GRID)
    bad_vec = tmp_path / "junk.geojson"
    bad_vec.write_text("{]")
    with pytest.raises(UnreadableFileError, match="junk.geojson: not a readable vector"):
        open_label(bad_vec, GRID)


@pytest.mark.parametrize("ext", [".gpkg", ".geojson", ".shp"])
def test_vector_labels_are_rasterized_on_the_grid(tmp_path, square_mask, ext):
    path = write_vector(tmp_path / f"b{ext}", [building_box(10, 20, 8, 28),
                                              building_box(30, 34, 40, 60)])
    label = open_label(path, GRID)
    assert isinstance(label, VectorLabel)
    expected = square_mask.copy()
    expected[30:34, 40:48] = 1
    assert (stitched(label) == expected).all()


def test_vector_labels_in_another_crs_are_reprojected(tmp_path, square_mask):
    to_wgs84 = Transformer.from_crs(32633, 4326, always_xy=True)
    poly = shapely.transform(building_box(10, 20, 8, 28).segmentize(0.5),
                             lambda xy: np.column_stack(to_wgs84.transform(xy[:, 0], xy[:, 1])))
    path = write_vector(tmp_path / "wgs84.geojson", [poly], epsg=4326)
    mask = stitched(open_label(path, GRID))
    assert np.abs(mask.astype(int) - square_mask).sum() <= 4  # boundary pixels only


def test_vector_without_crs_or_overlap(tmp_path):
    no_crs = write_vector(tmp_path / "nocrs.shp", [building_box(0, 5, 0, 5)], epsg=None)
    with pytest.raises(MissingCRSError, match="nocrs.shp: has no CRS"):
        open_label(no_crs, GRID)
    far = write_vector(tmp_path / "far.gpkg", [box(0, 0, 10, 10), box(20, 20, 30, 30)])
    with pytest.raises(NoOverlapError, match=r"far.gpkg: none of its 2 features overlap"):
        open_label(far, GRID)


def test_invalid_polygon_is_repaired(tmp_path):
    x0, y0 = ORIGIN
    bowtie = Polygon([(x0, y0), (x0 + 10, y0 - 10), (x0 + 10, y0), (x0, y0 - 10)])
    path = write_vector(tmp_path / "bowtie.gpkg", [bowtie])
    mask, _ = open_label(path, GRID).read(FULL)
    assert 100 < int(mask.sum()) < 400
