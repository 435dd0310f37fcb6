"""Loading, saving and wrapping segmentation-models-pytorch U-Nets."""

from __future__ import annotations

import json

import pytest
import torch
from segexplain.core.errors import ModelLoadError, UnreadableFileError
from segexplain.core.model.models import (
    EncoderNet,
    ExplainNet,
    as_loaded,
    build_model,
    load_model,
    save_model,
)

SMALL = {"decoder_channels": (16, 16, 8, 8, 8)}


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return build_model("unet", "resnet18", 3, 1, **SMALL).eval()


def _x(c=3, s=64):
    return torch.rand(2, c, s, s, generator=torch.Generator().manual_seed(1))


def test_save_pretrained_folder_round_trip(tmp_path, small_model):
    folder = save_model(as_loaded(small_model), tmp_path / "m")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    lm = load_model(folder)
    assert (lm.arch, lm.encoder, lm.in_channels, lm.classes) == ("unet", "resnet18", 3, 1)
    assert lm.output_stride == 32 and len(lm.sha256) == 64
    with torch.inference_mode():
        torch.testing.assert_close(lm.module(_x()), small_model(_x()))


def test_state_dict_checkpoint_with_architecture_arguments(tmp_path, small_model):
    path = tmp_path / "ckpt.pt"
    torch.save(small_model.state_dict(), path)
    # default architecture arguments (resnet34) do not fit a resnet18 checkpoint
    with pytest.raises(ModelLoadError, match="missing keys|unexpected keys|shape"):
        load_model(path)
    model = build_model("unet", "resnet34", 3, 1)
    torch.save(model.state_dict(), path)
    lm = load_model(path)             # unet / resnet34 / 3 / 1 are the defaults
    assert lm.encoder == "resnet34" and lm.path == path


def test_lightning_style_checkpoint_is_unwrapped(tmp_path):
    model = build_model("unet", "resnet18", 3, 1)
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "epoch": 3}, path)
    lm = load_model(path, encoder="resnet18")
    assert lm.encoder == "resnet18"


def test_wrong_channel_count_says_what_was_found(tmp_path):
    model = build_model("unet", "resnet18", 4, 1)
    path = tmp_path / "rgbi.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(ModelLoadError, match=r"4 input channels.*--in-channels 4"):
        load_model(path, encoder="resnet18", in_channels=3)
    assert load_model(path, encoder="resnet18", in_channels=4).in_channels == 4


def test_not_a_checkpoint(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ModelLoadError, match="junk.pt.*not a weights-only"):
        load_model(junk)
    obj = tmp_path / "list.pt"
    torch.save([1, 2, 3], obj)
    with pytest.raises(ModelLoadError, match="not a state dict"):
        load_model(obj)
    bad_st = tmp_path / "w.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    with pytest.raises(ModelLoadError, match="safetensors"):
        load_model(bad_st)


class Evil:
    """An arbitrary object: weights_only loading must refuse to build it."""

    def __reduce__(self):
        return (print, ("code ran",))


def test_pickled_code_is_never_executed(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(ModelLoadError):
        load_model(path)
    assert "code ran" not in capsys.readouterr().out


def test_missing_path_and_incomplete_folder(tmp_path, small_model):
    with pytest.raises(UnreadableFileError, match="does not exist"):
        load_model(tmp_path / "nope")
    folder = save_model(as_loaded(small_model), tmp_path / "m")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="model.safetensors"):
        load_model(folder)


def test_folder_with_wrong_config_is_a_load_error(tmp_path, small_model):
    folder = save_model(as_loaded(small_model), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["encoder_name"] = "resnet34"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not fit"):
        load_model(folder)


def test_explain_net_matches_the_model_in_one_pass(small_model):
    x = _x()
    net = ExplainNet(small_model).eval()
    with torch.inference_mode():
        prob, emb = net(x)
        expected_prob = torch.sigmoid(small_model(x))[:, 0]
        deepest = small_model.encoder(x)[-1]
    torch.testing.assert_close(prob, expected_prob)
    torch.testing.assert_close(emb, deepest.mean(dim=(2, 3)))
    assert emb.shape == (2, small_model.encoder.out_channels[-1])


def test_encoder_net_and_pooling_options(small_model):
    x = _x()
    with torch.inference_mode():
        e_avg = EncoderNet(small_model).eval()(x)
        e_both = EncoderNet(small_model, "avgmax").eval()(x)
        deepest = small_model.encoder(x)[-1]
    assert e_both.shape[1] == 2 * e_avg.shape[1]
    torch.testing.assert_close(e_both[:, e_avg.shape[1]:], deepest.amax(dim=(2, 3)))
    with pytest.raises(ValueError, match="pooling"):
        EncoderNet(small_model, "median")
