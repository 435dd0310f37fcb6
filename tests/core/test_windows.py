import numpy as np
import pytest
from affine import Affine
from rasterio.transform import from_origin
from segexplain.core.data.windows import (
    PatchWindow,
    check_patch_params,
    patch_windows,
    window_bounds,
    window_footprint,
)
from segexplain.core.errors import ConfigurationError, EmptyInputError


def coverage(height, width, wins):
    count = np.zeros((height, width), int)
    for w in wins:
        count[w.slices] += 1
    return count


@pytest.mark.parametrize("height,width,size", [(100, 100, 25), (100, 130, 32), (7, 9, 16),
                                                (64, 64, 64), (65, 63, 64)])
def test_windows_cover_every_pixel_once_without_overlap(height, width, size):
    wins = patch_windows(height, width, size)
    assert (coverage(height, width, wins) == 1).all()
    for w in wins:
        assert w.size == size
        assert 0 < w.height <= size and 0 < w.width <= size


def test_last_row_and_column_are_padded_not_dropped():
    wins = patch_windows(70, 50, 32)
    assert [w.row_off for w in wins[::2]] == [0, 32, 64]
    assert sorted({w.col_off for w in wins}) == [0, 32]
    last = wins[-1]
    assert last == PatchWindow(64, 32, 32, 6, 18)
    assert last.padded and not wins[0].padded


def test_overlap_with_stride():
    wins = patch_windows(100, 100, 40, stride=20)
    offsets = sorted({w.row_off for w in wins})
    assert offsets == [0, 20, 40, 60]
    cov = coverage(100, 100, wins)
    assert cov.min() >= 1 and cov.max() == 4
    assert wins[-1].height == 40 and wins[-1].width == 40


def test_stride_overhang_keeps_full_coverage():
    wins = patch_windows(100, 100, 40, stride=30)
    assert sorted({w.row_off for w in wins}) == [0, 30, 60]
    assert wins[-1].height == 40
    assert coverage(100, 100, wins).min() == 1
    wins = patch_windows(101, 100, 40, stride=30)
    assert sorted({w.row_off for w in wins}) == [0, 30, 60, 90]
    assert wins[-1].height == 11
    assert coverage(101, 100, wins).min() == 1


def test_image_smaller_than_patch_gives_one_padded_window():
    assert patch_windows(10, 12, 256) == [PatchWindow(0, 0, 256, 10, 12)]


@pytest.mark.parametrize("size,stride,match", [
    (0, None, "patch size 0"),
    (-5, None, "patch size -5"),
    (2.5, None, "patch size 2.5"),
    (True, None, "patch size True"),
    (32, 0, "stride 0"),
    (32, 33, "stride 33 px is larger than the patch size 32 px"),
])
def test_bad_parameters(size, stride, match):
    with pytest.raises(ConfigurationError, match=match):
        patch_windows(100, 100, size, stride)


def test_empty_image_is_an_input_error():
    with pytest.raises(EmptyInputError, match="image height 0 px"):
        patch_windows(0, 10, 8)


def test_check_patch_params_defaults_stride_to_size():
    assert check_patch_params(64) == (64, 64)
    assert check_patch_params(np.int64(64), 32) == (64, 32)


def test_footprint_in_image_crs():
    t = from_origin(1000.0, 2000.0, 0.5, 0.5)
    win = PatchWindow(row_off=10, col_off=20, size=32, height=32, width=8)
    poly = window_footprint(t, win)
    assert poly.bounds == pytest.approx((1010.0, 1979.0, 1014.0, 1995.0))
    assert poly.area == pytest.approx(8 * 32 * 0.25)
    assert window_bounds(t, win) == pytest.approx(poly.bounds)


def test_footprint_follows_a_rotated_transform():
    t = Affine.translation(100, 100) * Affine.rotation(90) * Affine.scale(2, -2)
    poly = window_footprint(t, PatchWindow(0, 0, 4, 4, 4))
    assert poly.area == pytest.approx(64.0)
    assert poly.bounds == pytest.approx((100.0, 100.0, 108.0, 108.0))
