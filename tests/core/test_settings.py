"""EngineSettings: one frozen record of the engine's settings and the resume key made from it."""

from __future__ import annotations

import dataclasses

import pytest
from segexplain.core.data.datasets import ImagePair
from segexplain.core.engine.settings import EngineSettings
from segexplain.core.errors import ConfigurationError
from segexplain.core.scale.tiles import tile_key

SPEED_ONLY = {"batch_size", "threads", "readers"}


def test_result_key_leaves_out_only_the_speed_settings():
    base = EngineSettings(patch_size=64)
    fast = dataclasses.replace(base, batch_size=16, threads=2, readers=4)
    assert base.result_key() == fast.result_key()
    names = {f.name for f in dataclasses.fields(EngineSettings)}
    assert set(base.result_key()) == names - SPEED_ONLY
    for name, value in (("stride", 32), ("iou_convention", "one"), ("backend", "onnx"),
                        ("encoder_only", True), ("thumb_size", 16), ("pooling", "max"),
                        ("min_valid", 0.25), ("bands", (3, 2, 1))):
        assert dataclasses.replace(base, **{name: value}).result_key() != base.result_key(), \
            name


def test_tile_key_follows_the_result_key(tmp_path):
    image = tmp_path / "a1.tif"
    image.write_bytes(b"not read, only stat-ed")
    pair = ImagePair(image, None, "a", "train", "a1")
    base = EngineSettings(patch_size=64)
    key = tile_key(pair, "0" * 64, base)
    assert tile_key(pair, "0" * 64, dataclasses.replace(base, threads=1, batch_size=2)) == key
    assert tile_key(pair, "0" * 64, dataclasses.replace(base, iou_convention="one")) != key
    assert tile_key(pair, "1" * 64, base) != key


def test_settings_are_frozen_hashable_and_checked():
    s = EngineSettings(bands=[3, 2, 1])
    assert s.bands == (3, 2, 1) and hash(s) == hash(EngineSettings(bands=(3, 2, 1)))
    assert s.to_dict()["bands"] == [3, 2, 1]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.patch_size = 128  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="IoU convention 'half'"):
        EngineSettings(iou_convention="half")
    with pytest.raises(ConfigurationError, match="thumbnail size 128"):
        EngineSettings(patch_size=64, thumb_size=128)
    with pytest.raises(ConfigurationError, match="min_valid 1.5"):
        EngineSettings(min_valid=1.5)
