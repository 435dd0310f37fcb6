"""Training: augmentation, loss, the tiny preset end to end through the command line."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from segexplain.core.cli import main
from segexplain.core.data.datasets import discover
from segexplain.core.data.imagery import open_source
from segexplain.core.errors import ConfigurationError
from segexplain.core.model.models import load_model
from segexplain.core.model.training import (
    WeightAverage,
    augment,
    bce_dice_loss,
    check_config,
    lr_factor,
    preset,
    train,
    usable_cores,
    validation_windows,
)
from segexplain.core.sample.generate import write_sample_data


def test_augment_keeps_image_label_and_valid_aligned():
    rng = np.random.default_rng(0)
    y = np.zeros((32, 32), np.uint8)
    y[3:9, 20:30] = 1                                  # asymmetric: catches any mismatch
    x = np.repeat(y[None].astype(np.float32), 3, axis=0)
    v = np.ones((32, 32), bool)
    v[:, :2] = False
    seen = set()
    for seed in range(12):
        xa, ya, va = augment(x, y, v, np.random.default_rng(seed))
        assert xa.shape == (3, 32, 32) and xa.dtype == np.float32
        assert xa.min() >= 0.0 and xa.max() <= 1.0
        bright = xa[0] > xa[0][va & (ya == 0)].max()
        assert (bright == ((ya == 1) & va)).all()     # buildings moved with the label
        assert va.sum() == v.sum() and (xa[:, ~va] == 0).all()
        seen.add(ya.tobytes())
    assert len(seen) >= 4 and rng is not None          # flips and rotations happen


def test_loss_ignores_invalid_pixels():
    logits = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    target = (torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    valid[:, :, 8:] = False
    other = target.clone()
    other[:, :, 8:] = 1 - other[:, :, 8:]
    a, b = bce_dice_loss(logits, target, valid), bce_dice_loss(logits, other, valid)
    assert torch.isclose(a, b)
    perfect = bce_dice_loss(target * 40 - 20, target, valid)
    assert perfect < 0.01 < a
    # pos_weight scales the cross-entropy of building pixels only (Dice is unchanged)
    ones, miss = torch.ones(1, 4, 4), torch.full((1, 4, 4), -2.0)
    ok = torch.ones(1, 4, 4, dtype=torch.bool)
    extra = bce_dice_loss(miss, ones, ok, pos_weight=3.0) - bce_dice_loss(miss, ones, ok)
    assert torch.isclose(extra, 2 * F.softplus(torch.tensor(2.0)))
    empty = torch.zeros(1, 4, 4)
    assert torch.isclose(bce_dice_loss(miss, empty, ok, pos_weight=3.0),
                         bce_dice_loss(miss, empty, ok))


def test_weight_average_follows_the_live_weights():
    torch.manual_seed(0)
    live = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.BatchNorm2d(2))
    avg = WeightAverage(live, decay=0.9)
    start = avg.module[0].weight.clone()
    with torch.no_grad():
        live[0].weight.add_(1.0)
    live.train()
    live(torch.randn(4, 1, 3, 3))                      # batch-norm statistics move too
    avg.update()
    d = 2.0 / 11.0                                      # ramp: (1 + n) / (10 + n), n = 1
    assert torch.allclose(avg.module[0].weight, start + (1.0 - d))
    assert torch.allclose(avg.module[1].running_mean, (1.0 - d) * live[1].running_mean)
    assert int(avg.module[1].num_batches_tracked) == 1  # integer buffers are copied
    assert not any(p.requires_grad for p in avg.module.parameters())
    for _ in range(200):
        avg.update()
    assert torch.allclose(avg.module[0].weight, live[0].weight, atol=1e-5)
    assert not torch.equal(live[0].weight, start + (1.0 - d))  # the live model is its own


def test_bad_settings():
    with pytest.raises(ConfigurationError, match="multiples of 32"):
        check_config(preset("tiny", patch_size=100))
    with pytest.raises(ConfigurationError, match="preset 'huge'"):
        preset("huge")


@pytest.mark.slow
def test_tiny_preset_trains_and_saves_a_loadable_model(tmp_path):
    data = tmp_path / "data"
    write_sample_data(data, small=True)
    out = tmp_path / "model"
    assert main(["train", "--data", str(data / "train"), "--out", str(out),
                 "--preset", "tiny", "--threads", "1", "--progress", "none"]) == 0
    log = json.loads((out / "training_log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == [1, 2]
    for e in log["epochs"]:
        assert np.isfinite(e["loss"]) and 0.0 <= e["val_iou"] <= 1.0 and e["seconds"] > 0
    assert 0.0 <= log["val_iou"] <= 1.0 and log["config"]["encoder"] == "resnet18"
    best = max(log["epochs"], key=lambda e: e["val_iou"])  # the best epoch is kept
    assert log["best_epoch"] == best["epoch"]
    val = [open_source(p, channels=3) for p in discover(data / "train") if p.split == "val"]
    if best["val_patches"] == len(validation_windows(val, 128)):  # per epoch: every patch
        assert log["val_iou"] == best["val_iou"]
    else:
        assert best["val_patches"] == 32
    for src in val:
        src.close()
    model = load_model(out)
    assert (model.arch, model.encoder, model.in_channels) == ("unet", "resnet18", 3)
    # an existing folder that is not a model is never overwritten
    junk = tmp_path / "notes"
    junk.mkdir()
    (junk / "keep.txt").write_text("x")
    assert main(["train", "--data", str(data / "train"), "--out", str(junk),
                 "--preset", "tiny", "--progress", "none"]) == 2
    assert (junk / "keep.txt").exists()


def test_learning_rate_follows_the_step_count_alone():
    lrs = [lr_factor(s, 100, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and max(lrs) == pytest.approx(lrs[9])
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))  # cosine decay
    assert lrs[-1] < 0.01
    with pytest.raises(ConfigurationError, match="threads 0"):
        check_config(preset("tiny", threads=0))


def test_demo_preset_is_a_fixed_number_of_steps():
    cfg = preset("demo")
    assert cfg.epochs * cfg.steps_per_epoch >= 1000
    assert "minutes" not in cfg.to_dict()


@pytest.mark.slow
def test_same_seed_gives_identical_weights_on_a_busy_machine(tmp_path):
    """Same seed and thread count -> bit-identical weights, with another core kept busy."""
    data = tmp_path / "data"
    write_sample_data(data, small=True)
    pairs = discover(data / "train")
    tr = [p for p in pairs if p.split == "train"]
    va = [p for p in pairs if p.split == "val"]
    cfg = preset("tiny", seed=7)        # default threads: the usable cores, not the load

    def weights() -> tuple[dict[str, torch.Tensor], dict]:
        model, log = train(tr, va, cfg)
        return {k: v.clone() for k, v in model.module.state_dict().items()}, log

    quiet, log_a = weights()
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy, log_b = weights()
    finally:
        burner.kill()
        burner.wait()
    assert quiet.keys() == busy.keys()
    assert all(torch.equal(quiet[k], busy[k]) for k in quiet)
    assert log_a["steps"] == log_b["steps"] == cfg.epochs * cfg.steps_per_epoch
    assert log_a["val_iou"] == log_b["val_iou"] and log_a["threads"] == usable_cores()
    other, _ = train(tr, va, preset("tiny", seed=8))
    assert not all(torch.equal(quiet[k], other.module.state_dict()[k]) for k in quiet)
