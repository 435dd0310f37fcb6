import io
import json

import numpy as np
import pytest
import rasterio
from segexplain.core.cli import main
from segexplain.core.data.datasets import discover
from segexplain.core.data.imagery import open_source
from segexplain.core.errors import ConfigurationError
from segexplain.core.sample.generate import make_tile, write_sample_data
from segexplain.core.sample.scenes import HELD_OUT, REGIONS
from shapely.geometry import box

TRAIN_REGIONS = ["metro", "suburb", "farmland", "alpine", "industrial"]


def test_layout_and_split(small_sample):
    train = small_sample / "train"
    assert list(REGIONS) == TRAIN_REGIONS and list(HELD_OUT) == ["informal"]
    names = sorted(p.name for p in (train / "images").iterdir())
    assert names == sorted(f"{r}{i}.tif" for r in TRAIN_REGIONS for i in (1, 2))
    assert sorted(p.name for p in (train / "gt").iterdir()) == names
    assert json.loads((train / "dataset.json").read_text()) == {"val_tiles": [1]}
    pairs = discover(train)
    assert {(p.region, p.split) for p in pairs if p.name.endswith("1")} == {
        (r, "val") for r in TRAIN_REGIONS}
    assert {p.split for p in pairs if p.name.endswith("2")} == {"train"}
    new = discover(small_sample / "new")
    assert [(p.name, p.region, p.split) for p in new] == [
        ("informal1", "informal", "new"), ("informal2", "informal", "new")]
    unlabelled = discover(small_sample / "new", require_labels=False)
    assert all(p.label is not None for p in unlabelled)


def test_rasters_are_georeferenced_masks_and_disjoint(small_sample):
    footprints = []
    for img in sorted(small_sample.glob("*/images/*.tif")):
        gt = img.parent.parent / "gt" / img.name
        with rasterio.open(img) as a, rasterio.open(gt) as b:
            assert (a.count, a.dtypes[0], a.width, a.height) == (3, "uint8", 256, 256)
            assert a.crs.to_epsg() == 32633 and b.crs == a.crs
            assert a.res == pytest.approx((0.3, 0.3)) and b.transform == a.transform
            values = set(np.unique(b.read(1)).tolist())
            assert values <= {0, 255}
            rgb = a.read()
            assert rgb.std() > 10  # textured, not flat colour
            footprints.append(box(*a.bounds))
    assert len(footprints) == 12
    for i, f in enumerate(footprints):
        assert not any(f.intersects(g) for g in footprints[i + 1:])


def test_every_region_has_buildings_and_background(small_sample):
    for region in [*TRAIN_REGIONS, "informal"]:
        folder = "new" if region == "informal" else "train"
        frac = []
        for i in (1, 2):
            with rasterio.open(small_sample / folder / "gt" / f"{region}{i}.tif") as ds:
                frac.append((ds.read(1) > 0).mean())
        assert 0 < np.mean(frac) < 0.8, region


def test_sample_reads_through_the_data_layer(small_sample):
    pair = discover(small_sample / "train")[0]
    with open_source(pair) as src:
        wins = src.windows(128)
        assert len(wins) == 4
        p = src.read(wins[0])
    assert p.image.shape == (3, 128, 128) and p.valid.all()
    assert set(np.unique(p.label).tolist()) <= {0, 1}


def test_tiles_are_deterministic_and_seeded():
    a_img, a_mask = make_tile("suburb", 1, seed=3, tile_size=96)
    b_img, b_mask = make_tile("suburb", 1, seed=3, tile_size=96)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_mask, b_mask)
    c_img, _ = make_tile("suburb", 1, seed=4, tile_size=96)
    d_img, _ = make_tile("suburb", 2, seed=3, tile_size=96)
    assert not np.array_equal(a_img, c_img) and not np.array_equal(a_img, d_img)


def test_buildings_differ_from_background_but_colour_overlaps():
    """Roofs and background share colours (no colour-threshold solution), yet differ on average."""
    img, mask = make_tile("suburb", 1, seed=0, tile_size=256)
    lum = img.astype(float).mean(axis=0)
    roof, ground = lum[mask == 1], lum[mask == 0]
    lo, hi = np.percentile(roof, [10, 90])
    inside = ((ground >= lo) & (ground <= hi)).mean()
    assert inside > 0.05  # a brightness threshold cannot separate them


def test_bad_parameters(tmp_path):
    with pytest.raises(ConfigurationError, match="tile size 10 px: expected 64 to 8192"):
        write_sample_data(tmp_path, tile_size=10)
    with pytest.raises(ConfigurationError, match="tiles per region 0"):
        write_sample_data(tmp_path, tiles=0)
    with pytest.raises(ConfigurationError, match="sample region 'moon' is unknown"):
        make_tile("moon", 1)


def test_command_line(tmp_path, capsys):
    out = tmp_path / "data"
    code = main(["sample-data", str(out), "--tile-size", "64", "--tiles", "1", "--seed", "7",
                 "--progress", "jsonl"])
    assert code == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[0] == {"event": "stage", "stage": "sample-data", "total": 6}
    done = events[-1]
    assert done["event"] == "done"
    folders = done["result"]["folders"]
    assert folders["train"]["n_tiles"] == 5 and folders["new"]["n_tiles"] == 1
    assert folders["train"]["tiles"] == {r: 1 for r in TRAIN_REGIONS}
    assert (out / "train" / "images" / "metro1.tif").is_file()
    assert not list(out.rglob("*.part"))


def test_command_line_error_is_one_line(tmp_path, capsys):
    assert main(["sample-data", str(tmp_path), "--tile-size", "8", "--progress", "jsonl"]) == 2
    (line,) = capsys.readouterr().out.splitlines()[-1:]
    event = json.loads(line)
    assert event["event"] == "error" and event["error"] == "ConfigurationError"
    stream = io.StringIO(event["message"])
    assert len(stream.readlines()) == 1
