import io
import json
import threading

import numpy as np
import pytest
from segexplain.core.data.datasets import ImagePair
from segexplain.core.data.imagery import open_source
from segexplain.core.data.windows import PatchWindow
from segexplain.core.engine.inference import image_record
from segexplain.core.errors import (
    ConfigurationError,
    EmptyInputError,
    GridMismatchError,
    MissingCRSError,
    UnreadableFileError,
)
from segexplain.core.progress import Progress
from shapely.geometry import box

from .conftest import ORIGIN, RES, write_tif, write_vector


def pair(image, label=None, split="train"):
    return ImagePair(image=image, label=label, region="r", split=split, name=image.stem)


def test_uint8_rgb_with_raster_label(tmp_path, rgb_u8, square_mask):
    data = rgb_u8()
    img = write_tif(tmp_path / "a.tif", data)
    gt = write_tif(tmp_path / "a_label.tif", square_mask * 255)
    with open_source(pair(img, gt)) as src:
        assert (src.width, src.height, src.count, src.dtype) == (48, 40, 3, "uint8")
        assert src.crs.to_epsg() == 32633 and src.transform.a == RES
        assert (src.name, src.region, src.split, src.has_label) == ("a", "r", "train", True)
        wins = src.windows(32)
        assert len(wins) == 4
        p = src.read(wins[0])
        assert p.image.dtype == np.float32 and p.image.shape == (3, 32, 32)
        np.testing.assert_allclose(p.image, data[:, :32, :32] / 255.0, atol=1e-6)
        assert p.label.dtype == np.uint8 and (p.label == square_mask[:32, :32]).all()
        assert p.valid.all()
        rec = image_record(src)
        assert rec.width == 48 and rec.transform == tuple(src.transform)[:6]
        assert rec.label == str(gt) and rec.path == str(img.resolve())


def test_padded_window_is_zero_and_invalid(tmp_path, rgb_u8, square_mask):
    data = rgb_u8()
    img = write_tif(tmp_path / "a.tif", data)
    gt = write_tif(tmp_path / "gt.tif", square_mask)
    with open_source(pair(img, gt)) as src:
        p = src.read(PatchWindow(32, 32, 32, 8, 16))
        np.testing.assert_allclose(p.image[:, :8, :16], data[:, 32:, 32:] / 255.0, atol=1e-6)
        assert (p.image[:, 8:, :] == 0).all() and (p.image[:, :, 16:] == 0).all()
        assert p.valid[:8, :16].all() and p.valid.sum() == 8 * 16
        assert (p.label[8:] == 0).all()


def test_uint16_percentile_stretch(tmp_path):
    rng = np.random.default_rng(1)
    data = np.stack([rng.integers(1000, 5000, (64, 64)), rng.integers(0, 300, (64, 64)),
                     rng.integers(20000, 60000, (64, 64))]).astype(np.uint16)
    img = write_tif(tmp_path / "u16.tif", data)
    with open_source(pair(img)) as src:
        p = src.read(src.windows(64)[0])
    for b in range(3):
        lo, hi = np.percentile(data[b], [2, 98])
        expected = np.clip((data[b] - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(p.image[b], expected, atol=2e-3)
        assert 0.015 < (p.image[b] == 0).mean() < 0.03
    assert p.label is None


def test_float_nan_and_constant_band(tmp_path):
    data = np.linspace(0, 1, 3 * 32 * 32, dtype=np.float32).reshape(3, 32, 32)
    data[2] = 5.0  # constant band: no division by zero
    data[:, 0, :4] = np.nan
    data[1, 1, 0] = np.inf
    img = write_tif(tmp_path / "f.tif", data)
    with open_source(pair(img)) as src:
        p = src.read(src.windows(32)[0])
    assert np.isfinite(p.image).all()
    assert not p.valid[0, :4].any() and not p.valid[1, 0]
    assert p.valid.sum() == 32 * 32 - 5
    assert (p.image[:, 0, :4] == 0).all()
    assert p.image.min() >= 0 and p.image.max() <= 1


def test_nodata_windows_are_skipped_but_padded_edges_kept(tmp_path, rgb_u8):
    data = np.maximum(rgb_u8(100, 100), 1)
    data[:, :50, :50] = 0
    data[:, 0, 0] = 0
    img = write_tif(tmp_path / "nd.tif", data, nodata=0)
    with open_source(pair(img)) as src:
        wins = src.windows(50)
        assert [(w.row_off, w.col_off) for w in wins] == [(0, 50), (50, 0), (50, 50)]
        assert len(src.windows(50, min_valid=0.0)) == 4
        p = src.read(PatchWindow(40, 40, 20, 20, 20))
        assert not p.valid[:10, :10].any() and p.valid[10:, 10:].all()
        edge = src.windows(64)
        assert {(w.row_off, w.col_off) for w in edge} == {(0, 64), (64, 0), (64, 64)}
    with pytest.raises(ConfigurationError, match="min_valid 1.5"):
        open_source(pair(img)).windows(50, min_valid=1.5)


def test_all_nodata_is_empty_input(tmp_path):
    img = write_tif(tmp_path / "empty.tif", np.zeros((3, 16, 16), np.uint8), nodata=0)
    with pytest.raises(EmptyInputError, match="empty.tif: every pixel is nodata"):
        open_source(pair(img))
    nan = write_tif(tmp_path / "nan.tif", np.full((3, 16, 16), np.nan, np.float32))
    with pytest.raises(EmptyInputError, match="nan.tif: every pixel is nodata"):
        open_source(pair(nan))


def test_single_band_is_replicated_with_a_warning(tmp_path, rgb_u8):
    data = rgb_u8()[:1]
    img = write_tif(tmp_path / "gray.tif", data)
    said = []
    with open_source(pair(img), warn=said.append) as src:
        p = src.read(src.windows(48)[0])
    assert len(said) == 1 and "single-band image" in said[0] and "gray.tif" in said[0]
    for c in range(3):
        np.testing.assert_allclose(p.image[c, :40], data[0] / 255.0, atol=1e-6)


def test_extra_bands_default_and_selection(tmp_path, rgb_u8):
    data = np.concatenate([rgb_u8(), rgb_u8(seed=5)[:1]])  # 4 bands
    img = write_tif(tmp_path / "rgbi.tif", data, photometric="MINISBLACK")
    stream = io.StringIO()
    with open_source(pair(img), warn=Progress("jsonl", stream=stream)) as src:
        assert src.bands == [1, 2, 3]
        p = src.read(src.windows(48)[0])
    event = json.loads(stream.getvalue().splitlines()[0])
    assert event["level"] == "warning" and "4 bands, using bands 1-3" in event["message"]
    np.testing.assert_allclose(p.image[:, :40], data[:3] / 255.0, atol=1e-6)
    with open_source(pair(img), bands=[4, 2, 1]) as src:
        p = src.read(src.windows(48)[0])
    np.testing.assert_allclose(p.image[:, :40], data[[3, 1, 0]] / 255.0, atol=1e-6)


def test_rgba_alpha_band_is_the_mask(tmp_path, rgb_u8):
    data = np.concatenate([rgb_u8(), np.full((1, 40, 48), 255, np.uint8)])
    data[3, :10] = 0
    img = write_tif(tmp_path / "rgba.tif", data)
    said = []
    with open_source(pair(img), warn=said.append) as src:
        assert src.bands == [1, 2, 3] and said == []
        p = src.read(PatchWindow(0, 0, 48, 40, 48))
        assert len(src.windows(20)) == 6
        assert len(src.windows(20, min_valid=0.9)) == 3
    assert not p.valid[:10].any() and p.valid[10:40, :48].all()
    assert (p.image[:, :10] == 0).all()


@pytest.mark.parametrize("bands,count,match", [
    ([1, 2, 9], 4, r"bands \[9\] do not exist \(the image has 4 bands"),
    ([1, 2], 4, r"2 bands \[1, 2\] selected but the model takes 3 channels"),
    (None, 2, "2 bands but the model takes 3 channels"),
])
def test_bad_band_choices(tmp_path, rgb_u8, bands, count, match):
    data = np.concatenate([rgb_u8(), rgb_u8()])[:count]
    img = write_tif(tmp_path / "b.tif", data, photometric="MINISBLACK")
    with pytest.raises(ConfigurationError, match=match):
        open_source(pair(img), bands=bands)


def test_image_errors(tmp_path, rgb_u8, square_mask):
    no_crs = write_tif(tmp_path / "nocrs.tif", rgb_u8(), crs=None)
    with pytest.raises(MissingCRSError, match="nocrs.tif: the image has no CRS"):
        open_source(pair(no_crs))
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00garbage")
    with pytest.raises(UnreadableFileError, match="junk.tif: not a readable raster image"):
        open_source(pair(junk))
    img = write_tif(tmp_path / "a.tif", rgb_u8())
    gt = write_tif(tmp_path / "gt.tif", square_mask[:, :40])
    with pytest.raises(GridMismatchError, match="gt.tif: size 40x40 px differs"):
        open_source(pair(img, gt))


def test_vector_label_through_the_source(tmp_path, rgb_u8, square_mask):
    x0, y0 = ORIGIN
    poly = box(x0 + 8 * RES, y0 - 20 * RES, x0 + 28 * RES, y0 - 10 * RES)
    img = write_tif(tmp_path / "a.tif", rgb_u8())
    vec = write_vector(tmp_path / "a.gpkg", [poly])
    with open_source(pair(img, vec)) as src:
        p = src.read(PatchWindow(0, 0, 48, 40, 48))
    assert (p.label[:40] == square_mask).all()


def test_reads_from_several_threads_match_serial_reads(tmp_path, rgb_u8, square_mask):
    img = write_tif(tmp_path / "a.tif", rgb_u8(96, 96), tiled=True)
    gt = np.tile(square_mask, (3, 2))[:96, :96]
    gt_path = write_tif(tmp_path / "gt.tif", gt)
    with open_source(pair(img, gt_path)) as src:
        wins = src.windows(16, stride=8)
        serial = [src.read(w) for w in wins]
        results: dict[int, list] = {}

        def work(k):
            results[k] = [src.read(w) for w in wins[k::4]]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(src._handles) >= 2
        for k in range(4):
            for got, want in zip(results[k], serial[k::4], strict=True):
                assert got.window == want.window
                assert np.array_equal(got.image, want.image)
                assert np.array_equal(got.label, want.label)
    assert src._handles == []
