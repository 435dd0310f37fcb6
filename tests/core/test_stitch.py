"""Stitching patch probabilities into aligned prediction / confusion GeoTIFFs."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from segexplain.core.data.windows import patch_windows
from segexplain.core.engine.metrics import confusion_counts
from segexplain.core.engine.stitch import NODATA, StripStitcher, confusion_codes

CRS_ = CRS.from_epsg(32633)
TRANSFORM = from_origin(400000.0, 5400000.0, 0.3, 0.3)


def _stitcher(tmp_path, h, w, size, with_label=True):
    return StripStitcher(width=w, height=h, crs=CRS_, transform=TRANSFORM, patch_size=size,
                         pred_path=tmp_path / "x_pred.tif",
                         confusion_path=tmp_path / "x_confusion.tif" if with_label else None)


def _read(path):
    with rasterio.open(path) as ds:
        return ds.read(1), ds.crs, ds.transform, ds.nodata


def test_stitched_rasters_align_and_count(tmp_path):
    rng = np.random.default_rng(0)
    h, w, size = 70, 90, 32                      # not a multiple: padded last row/column
    prob_img = rng.random((h, w)).astype(np.float32)
    label_img = (rng.random((h, w)) > 0.6).astype(np.uint8)
    valid_img = np.ones((h, w), bool)
    valid_img[5:9, 10:20] = False                # nodata hole
    with _stitcher(tmp_path, h, w, size) as st:
        for win in patch_windows(h, w, size, stride=24):   # overlapping
            p = np.zeros((size, size), np.float32)
            lab = np.zeros((size, size), np.uint8)
            v = np.zeros((size, size), bool)
            sl = (slice(0, win.height), slice(0, win.width))
            p[sl] = prob_img[win.slices]
            lab[sl] = label_img[win.slices]
            v[sl] = valid_img[win.slices]
            st.add(win, p, v, lab)
    pred, crs, transform, nodata = _read(tmp_path / "x_pred.tif")
    conf, *_ = _read(tmp_path / "x_confusion.tif")
    assert pred.shape == (h, w) and crs == CRS_ and transform == TRANSFORM
    assert nodata == NODATA
    expected = (prob_img >= 0.5).astype(np.uint8)
    expected[~valid_img] = NODATA
    np.testing.assert_array_equal(pred, expected)   # same prob in every overlap -> same mask
    np.testing.assert_array_equal(conf, confusion_codes(prob_img >= 0.5, label_img, valid_img))
    c = confusion_counts(prob_img >= 0.5, label_img, valid_img)
    assert st.counts == {k: int(c[k][0]) for k in ("tn", "tp", "fp", "fn")}
    assert sum(st.counts.values()) == h * w - 40


def test_overlaps_are_averaged(tmp_path):
    # two patches overlap on columns 16..31: 0.9 and 0.2 average to 0.55 -> building
    # two others overlap with 0.7 and 0.2 -> 0.45 -> background
    size = 32
    with _stitcher(tmp_path, 32, 48, size, with_label=False) as st:
        wins = patch_windows(32, 48, size, stride=16)
        assert [(wn.row_off, wn.col_off) for wn in wins] == [(0, 0), (0, 16)]
        a = np.full((size, size), 0.9, np.float32)
        a[16:] = 0.7
        st.add(wins[0], a, np.ones((size, size), bool), None)
        st.add(wins[1], np.full((size, size), 0.2, np.float32), np.ones((size, size), bool),
               None)
    pred, *_ = _read(tmp_path / "x_pred.tif")
    assert (pred[:16, :16] == 1).all() and (pred[16:, :16] == 1).all()
    assert (pred[:16, 16:32] == 1).all()           # (0.9 + 0.2) / 2
    assert (pred[16:, 16:32] == 0).all()           # (0.7 + 0.2) / 2
    assert (pred[:, 32:] == 0).all()
    assert not (tmp_path / "x_confusion.tif").exists()


def test_uncovered_rows_are_nodata_and_order_is_enforced(tmp_path):
    size = 16
    wins = patch_windows(64, 16, size)
    ones = np.ones((size, size), np.float32)
    valid = np.ones((size, size), bool)
    st = _stitcher(tmp_path, 64, 16, size, with_label=False)
    st.add(wins[0], ones, valid, None)
    st.add(wins[3], ones, valid, None)             # rows 16..47 never covered
    with pytest.raises(ValueError, match="row order"):
        st.add(wins[1], ones, valid, None)
    st.close()
    pred, *_ = _read(tmp_path / "x_pred.tif")
    assert (pred[:16] == 1).all() and (pred[48:] == 1).all()
    assert (pred[16:48] == NODATA).all()


def test_abort_removes_half_written_rasters(tmp_path):
    with pytest.raises(RuntimeError):
        with _stitcher(tmp_path, 32, 32, 32):
            raise RuntimeError("boom")
    assert not list(tmp_path.glob("*.tif"))
