import json

import numpy as np
import pytest
from segexplain.core.data.datasets import ImagePair, discover, region_and_tile
from segexplain.core.errors import (
    ConfigurationError,
    EmptyInputError,
    InputError,
    MissingLabelError,
    UnreadableFileError,
)
from shapely.geometry import box

from .conftest import write_tif, write_vector

IMG = np.zeros((3, 8, 8), np.uint8)
GT = np.zeros((8, 8), np.uint8)


def inria(root, cities=("austin", "vienna"), tiles=range(1, 8)):
    for city in cities:
        for i in tiles:
            write_tif(root / "images" / f"{city}{i}.tif", IMG)
            write_tif(root / "gt" / f"{city}{i}.tif", GT)
    return root


@pytest.mark.parametrize("stem,expected", [("austin12", ("austin", 12)),
                                           ("kitsap1", ("kitsap", 1)),
                                           ("tyrol-w_3", ("tyrol-w", 3)),
                                           ("scene", ("scene", None)),
                                           ("2019", ("2019", None))])
def test_region_and_tile(stem, expected):
    assert region_and_tile(stem) == expected


def test_inria_layout_standard_split(tmp_path):
    pairs = discover(inria(tmp_path))
    assert len(pairs) == 14
    by_name = {p.name: p for p in pairs}
    assert by_name["austin1"].split == "val" and by_name["austin5"].split == "val"
    assert by_name["austin6"].split == "train" and by_name["vienna7"].split == "train"
    assert by_name["vienna3"].region == "vienna"
    assert by_name["austin6"].label == (tmp_path / "gt" / "austin6.tif").resolve()
    assert by_name["austin6"].image.is_absolute()


def test_dataset_json_and_argument_override_val_tiles(tmp_path):
    inria(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"val_tiles": [1]}))
    splits = {p.name: p.split for p in discover(tmp_path)}
    assert [n for n, s in splits.items() if s == "val"] == ["austin1", "vienna1"]
    splits = {p.name: p.split for p in discover(tmp_path, val_tiles=[2, 3])}
    assert sorted(n for n, s in splits.items() if s == "val") == [
        "austin2", "austin3", "vienna2", "vienna3"]


def test_dataset_json_split_puts_every_tile_in_one_split(tmp_path):
    inria(tmp_path, cities=("informal",), tiles=(1, 2))
    (tmp_path / "dataset.json").write_text(json.dumps({"split": "new"}))
    assert {p.split for p in discover(tmp_path)} == {"new"}


def test_dataset_json_renames_regions(tmp_path):
    inria(tmp_path, cities=("scene",), tiles=(1, 7))
    (tmp_path / "dataset.json").write_text(json.dumps({"regions": {"scene7": "coast"}}))
    assert [(p.name, p.region) for p in discover(tmp_path)] == [
        ("scene1", "scene"), ("scene7", "coast")]


def test_bad_dataset_json(tmp_path):
    inria(tmp_path, tiles=(1,))
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(UnreadableFileError, match="dataset.json: not valid JSON"):
        discover(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"val_tiles": "one"}))
    with pytest.raises(ConfigurationError, match="val_tiles 'one'"):
        discover(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"split": "test"}))
    with pytest.raises(ConfigurationError, match="split 'test' is not one of"):
        discover(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"regions": ["a"]}))
    with pytest.raises(ConfigurationError, match=r"regions \['a'\]: expected an object"):
        discover(tmp_path)


def test_unlabelled_images_get_split_new(tmp_path):
    for i in (1, 2):
        write_tif(tmp_path / "images" / f"lagos{i}.tif", IMG)
    pairs = discover(tmp_path, require_labels=False)
    assert pairs == [
        ImagePair((tmp_path / "images" / "lagos1.tif").resolve(), None, "lagos", "new", "lagos1"),
        ImagePair((tmp_path / "images" / "lagos2.tif").resolve(), None, "lagos", "new", "lagos2"),
    ]
    with pytest.raises(MissingLabelError, match="lagos1.tif: no label found"):
        discover(tmp_path)


def test_folder_of_pairs_raster_and_vector(tmp_path):
    write_tif(tmp_path / "a1.tif", IMG)
    write_tif(tmp_path / "a1_label.tif", GT)
    write_tif(tmp_path / "b2.tif", IMG)
    write_vector(tmp_path / "b2_label.gpkg", [box(0, 0, 1, 1)])
    write_tif(tmp_path / "c3.tif", IMG)
    write_vector(tmp_path / "c3_label.geojson", [box(0, 0, 1, 1)])
    pairs = discover(tmp_path)
    assert [(p.name, p.label.name, p.split) for p in pairs] == [
        ("a1", "a1_label.tif", "train"), ("b2", "b2_label.gpkg", "train"),
        ("c3", "c3_label.geojson", "train")]


def test_images_and_labels_folders(tmp_path):
    write_tif(tmp_path / "images" / "x1.tif", IMG)
    write_vector(tmp_path / "labels" / "x1.shp", [box(0, 0, 1, 1)])
    write_tif(tmp_path / "images" / "x2.tif", IMG)
    write_tif(tmp_path / "labels" / "x2_label.tif", GT)
    pairs = discover(tmp_path)
    assert [p.label.name for p in pairs] == ["x1.shp", "x2_label.tif"]
    assert {p.split for p in pairs} == {"train"}


def test_folder_with_separate_labels_folder_argument(tmp_path):
    write_tif(tmp_path / "imgs" / "x1.tif", IMG)
    write_tif(tmp_path / "masks" / "x1.tif", GT)
    (pair,) = discover(tmp_path / "imgs", tmp_path / "masks")
    assert pair.label == (tmp_path / "masks" / "x1.tif").resolve()
    with pytest.raises(ConfigurationError, match="expected a folder of labels"):
        discover(tmp_path / "imgs", tmp_path / "masks" / "x1.tif")


def test_single_file_with_and_without_labels(tmp_path):
    img = write_tif(tmp_path / "scene.tif", IMG)
    lab = write_vector(tmp_path / "buildings.gpkg", [box(0, 0, 1, 1)])
    (pair,) = discover(img, lab)
    assert pair.label == lab.resolve() and pair.region == "scene" and pair.split == "train"
    with pytest.raises(MissingLabelError, match="scene.tif: no label found"):
        discover(img)
    (pair,) = discover(img, require_labels=False)
    assert pair.label is None and pair.split == "new"
    write_tif(tmp_path / "scene_label.tif", GT)
    assert discover(img)[0].label == (tmp_path / "scene_label.tif").resolve()


def test_missing_and_empty_inputs(tmp_path):
    with pytest.raises(UnreadableFileError, match="nope: no such file or folder"):
        discover(tmp_path / "nope")
    with pytest.raises(EmptyInputError, match="no images found"):
        discover(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UnreadableFileError, match="notes.txt: not an image file"):
        discover(tmp_path / "notes.txt")
    (tmp_path / "images").mkdir()
    with pytest.raises(EmptyInputError, match="no images found"):
        discover(tmp_path)
    img = write_tif(tmp_path / "scene.tif", IMG)
    with pytest.raises(UnreadableFileError, match="label .*missing.gpkg: no such file"):
        discover(img, tmp_path / "missing.gpkg")


def test_duplicate_stems_are_rejected(tmp_path):
    write_tif(tmp_path / "a.tif", IMG)
    write_tif(tmp_path / "a.tiff", IMG)
    with pytest.raises(InputError, match=r"image names \['a'\] appear more than once"):
        discover(tmp_path, require_labels=False)
