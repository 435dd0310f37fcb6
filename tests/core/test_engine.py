"""The inference engine on a tiny real raster with a tiny real model."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin
from segexplain.core.data.datasets import ImagePair
from segexplain.core.engine.inference import analyze_images, iter_batches
from segexplain.core.engine.metrics import HIST_BINS, confusion_counts, iou_from_counts
from segexplain.core.engine.records import ARRAY_COLUMNS, METRIC_COLUMNS, UNCERTAINTY_COLUMNS
from segexplain.core.engine.settings import EngineSettings
from segexplain.core.errors import ConfigurationError, EmptyInputError, NoValidPatchError
from segexplain.core.model.models import as_loaded, build_model
from segexplain.core.progress import Progress

CRS_ = CRS.from_epsg(32633)
TRANSFORM = from_origin(400000.0, 5400000.0, 0.5, 0.5)
H, W, S = 96, 160, 64           # 2 x 3 windows at stride 64, the last row/column padded


@pytest.fixture(scope="module", autouse=True)
def _modest_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def write_pair(folder, name="tile1", *, h=H, w=W, bands=3, dtype="uint8", nan_block=False,
               all_nodata=False, label=True):
    rng = np.random.default_rng(0)
    mask = np.zeros((h, w), np.uint8)
    for _ in range(8):
        r, c = rng.integers(0, h - 12), rng.integers(0, w - 12)
        mask[r:r + rng.integers(6, 12), c:c + rng.integers(6, 12)] = 1
    mask[:, 120:] = 0                         # an empty strip: label-empty patches
    img = (rng.random((bands, h, w)) * 60 + 40).astype(np.float32)
    img[:, mask == 1] += 120
    prof = {"driver": "GTiff", "width": w, "height": h, "count": bands, "crs": CRS_,
            "transform": TRANSFORM}
    if dtype == "float32":
        if nan_block:
            img[:, 10:40, 10:50] = np.nan
        if all_nodata:
            img[:] = np.nan
        data = img
    else:
        data = img.clip(0, 255).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    ip, lp = folder / f"{name}.tif", folder / f"{name}_label.tif"
    with rasterio.open(ip, "w", dtype=dtype, **prof) as ds:
        ds.write(data)
    if label:
        with rasterio.open(lp, "w", dtype="uint8", **{**prof, "count": 1}) as ds:
            ds.write(mask[None] * 255)
    return ImagePair(image=ip, label=lp if label else None, region="tile", split="val",
                     name=name)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model("unet", "resnet18", 3, 1, decoder_channels=(16, 16, 8, 8, 8)).eval()
    with torch.no_grad():            # confident outputs: probabilities far from 0.5
        m.segmentation_head[0].weight.mul_(40.0)
    return as_loaded(m)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return write_pair(tmp_path_factory.mktemp("img"))


@pytest.fixture(scope="module")
def result(model, pair, tmp_path_factory):
    rd = tmp_path_factory.mktemp("rasters")
    settings = EngineSettings(patch_size=S, backend="torch", batch_size=4, thumb_size=16)
    table = analyze_images([pair], model, settings, raster_dir=rd)
    return table, rd


def test_patch_table_shapes(result, model):
    table, _ = result
    n = 2 * 3
    assert len(table) == n
    assert table.embeddings.shape == (n, model.embedding_channels)
    assert table.embeddings.dtype == np.float32 and np.isfinite(table.embeddings).all()
    for k in METRIC_COLUMNS:
        assert table.columns[k].shape == (n, *([HIST_BINS] if k in ARRAY_COLUMNS else [])), k
    assert table.columns["patch_id"].tolist() == list(range(n))
    assert table.columns["row_off"].tolist() == [0, 0, 0, 64, 64, 64]
    assert table.columns["col_off"].tolist() == [0, 64, 128, 0, 64, 128]
    assert table.columns["height"].tolist() == [64, 64, 64, 32, 32, 32]
    assert table.columns["width"].tolist() == [64, 64, 32, 64, 64, 32]
    assert set(table.columns["image"]) == {"tile1"}
    assert table.thumbnails["image"].shape == (n, 16, 16, 3)
    assert table.thumbnails["label"].shape == table.thumbnails["pred"].shape == (n, 16, 16)
    assert table.iou_convention == "zero" and table.has_labels
    assert CRS.from_wkt(table.crs_wkt) == CRS_
    # footprint of the padded corner patch: only its in-image part
    x0, y0 = TRANSFORM * (128, 64)
    x1, y1 = TRANSFORM * (160, 96)
    assert table.footprints[5].bounds == pytest.approx((x0, y1, x1, y0))


def test_stitched_rasters_are_aligned_with_the_image(result, pair):
    table, rd = result
    rec = table.images[0]
    assert rec.prediction == str(rd / "tile1_pred.tif")
    assert rec.confusion == str(rd / "tile1_confusion.tif")
    for path in (rec.prediction, rec.confusion):
        with rasterio.open(path) as ds, rasterio.open(pair.image) as src:
            assert (ds.crs, ds.transform, ds.width, ds.height) == \
                (src.crs, src.transform, src.width, src.height)
            assert ds.nodata == 255 and ds.dtypes[0] == "uint8"


def test_confusion_counts_agree_with_patch_metrics(result, pair):
    table, _ = result
    rec = table.images[0]
    with rasterio.open(rec.confusion) as ds:
        conf = ds.read(1)
    with rasterio.open(rec.prediction) as ds:
        pred = ds.read(1)
    with rasterio.open(pair.label) as ds:
        label = ds.read(1) > 0
    hist = np.bincount(conf[conf != 255].ravel(), minlength=4)
    assert rec.counts == {"tn": hist[0], "tp": hist[1], "fp": hist[2], "fn": hist[3]}
    assert sum(rec.counts.values()) == H * W
    assert rec.counts["tp"] > 0 and rec.counts["tn"] > 0
    # no overlap: each patch's IoU is the IoU of its window of the stitched rasters
    for i in range(len(table)):
        r0, c0 = table.columns["row_off"][i], table.columns["col_off"][i]
        h, w = table.columns["height"][i], table.columns["width"][i]
        c = confusion_counts(pred[None, r0:r0 + h, c0:c0 + w] == 1,
                             label[None, r0:r0 + h, c0:c0 + w])
        assert iou_from_counts(c["tp"], c["fp"], c["fn"], "zero")[0] == \
            pytest.approx(table.columns["iou"][i])
        assert table.columns["label_frac"][i] == pytest.approx((c["tp"] + c["fn"])[0] / (h * w))


def test_iou_conventions_change_only_empty_patches(model, pair):
    tables = {conv: analyze_images([pair], model, EngineSettings(
                  patch_size=S, backend="torch", iou_convention=conv, thumb_size=8))
              for conv in ("zero", "one", "exclude")}
    empty = (tables["zero"].columns["label_frac"] == 0) & \
            (tables["zero"].columns["pred_frac"] == 0)
    rest = ~empty
    np.testing.assert_allclose(tables["one"].columns["iou"][rest],
                               tables["zero"].columns["iou"][rest])
    assert (tables["zero"].columns["iou"][empty] == 0).all()
    assert (tables["one"].columns["iou"][empty] == 1).all()
    assert np.isnan(tables["exclude"].columns["iou"][empty]).all()
    assert tables["exclude"].iou_convention == "exclude"


def test_overlapping_patches_are_stitched(model, pair, tmp_path):
    settings = EngineSettings(patch_size=S, stride=32, backend="torch", thumb_size=8)
    table = analyze_images([pair], model, settings, raster_dir=tmp_path)
    assert len(table) == 2 * 4
    with rasterio.open(tmp_path / "tile1_pred.tif") as ds:
        pred = ds.read(1)
    assert set(np.unique(pred)) <= {0, 1} and (pred == 1).any()
    assert sum(table.images[0].counts.values()) == H * W


def test_encoder_only_skips_the_decoder(model, pair, result, tmp_path):
    calls = []
    hook = model.module.decoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        enc = analyze_images([pair], model, EngineSettings(patch_size=S, backend="torch",
                                                           encoder_only=True),
                             raster_dir=tmp_path)
    finally:
        hook.remove()
    assert calls == []
    full, _ = result
    np.testing.assert_allclose(enc.embeddings, full.embeddings, rtol=1e-4, atol=1e-5)
    for k in (*UNCERTAINTY_COLUMNS, "iou", "pred_frac"):
        assert np.isnan(enc.columns[k]).all(), k
    np.testing.assert_allclose(enc.columns["label_frac"], full.columns["label_frac"])
    assert "pred" not in enc.thumbnails and not list(tmp_path.iterdir())
    assert enc.images[0].prediction is None


def test_unlabelled_imagery(model, tmp_path):
    pair = write_pair(tmp_path, "new1", label=False)
    table = analyze_images([pair], model, EngineSettings(patch_size=S, backend="torch"),
                           raster_dir=tmp_path)
    assert not table.has_labels and "label" not in table.thumbnails
    assert np.isfinite(table.columns["entropy"]).all()
    assert (tmp_path / "new1_pred.tif").exists() and not (tmp_path / "new1_confusion.tif").exists()


def test_results_are_handed_on_per_batch(model, pair):
    from segexplain.core.engine.inference import _open_images
    from segexplain.core.model.backends import make_backend

    images = _open_images([pair], model, S, S, 0.5, None, Progress("none"))
    be = make_backend(model, "torch", patch_size=S)
    sizes = [len(b.windows) for b in iter_batches(images, be, batch_size=4,
                                                  iou_convention="zero", encoder_only=False)]
    assert sizes == [4, 2]
    images[0].source.close()


def test_progress_is_reported(model, pair):
    buf = io.StringIO()
    analyze_images([pair], model, EngineSettings(patch_size=S, backend="torch", batch_size=2),
                   progress=Progress("jsonl", stream=buf, min_interval=0))
    events = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert events[0] == {"event": "stage", "stage": "infer", "total": 6}
    assert events[-1]["done"] == 6


def test_nan_pixels_are_nodata(model, tmp_path):
    pair = write_pair(tmp_path, "nan1", dtype="float32", nan_block=True)
    settings = EngineSettings(patch_size=S, backend="torch", min_valid=0.0)
    table = analyze_images([pair], model, settings, raster_dir=tmp_path)
    assert np.isfinite(table.embeddings).all()
    with rasterio.open(tmp_path / "nan1_confusion.tif") as ds:
        conf = ds.read(1)
    assert (conf[10:40, 10:50] == 255).all() and (conf[50:, 60:] != 255).all()
    assert sum(table.images[0].counts.values()) == H * W - 30 * 40


def test_all_nodata_image_is_empty_input(model, tmp_path):
    pair = write_pair(tmp_path, "void1", dtype="float32", all_nodata=True)
    with pytest.raises(EmptyInputError):
        analyze_images([pair], model, EngineSettings(patch_size=S, backend="torch"))


def test_image_without_a_valid_patch_is_told_apart_by_type(model, tmp_path):
    pair = write_pair(tmp_path, "corner1")
    with rasterio.open(pair.image) as src:
        data, profile = src.read(), src.profile
    corner = np.zeros_like(data)  # valid only in a corner smaller than half a patch
    corner[:, :10, :10] = np.maximum(data[:, :10, :10], 1)
    with rasterio.open(pair.image, "w", **{**profile, "nodata": 0}) as dst:
        dst.write(corner)
    with pytest.raises(NoValidPatchError, match="valid pixels"):
        analyze_images([pair], model, EngineSettings(patch_size=S, backend="torch"))


def test_patch_size_must_fit_the_encoder(model, pair):
    with pytest.raises(ConfigurationError, match="multiple of the encoder's output stride 32"):
        analyze_images([pair], model, EngineSettings(patch_size=100, backend="torch"))
    with pytest.raises(ConfigurationError, match="IoU convention"):
        analyze_images([pair], model, EngineSettings(patch_size=S, iou_convention="half"))


def test_four_channel_model_on_three_band_imagery(pair):
    m4 = as_loaded(build_model("unet", "resnet18", 4, 1, decoder_channels=(8, 8, 8, 8, 8)))
    with pytest.raises(ConfigurationError, match=r"--bands.*3-channel model"):
        analyze_images([pair], m4, EngineSettings(patch_size=S, backend="torch"))
