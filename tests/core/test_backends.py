"""Back ends: onnxruntime vs PyTorch, the export cache, the CLI export and CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segexplain.core.cli import main
from segexplain.core.errors import ConfigurationError, DeviceError
from segexplain.core.model.backends import (
    OnnxBackend,
    TorchBackend,
    make_backend,
    onnx_cache_path,
    resolve_backend,
)
from segexplain.core.model.models import as_loaded, build_model, load_model, save_model

S = 64


@pytest.fixture(scope="module", autouse=True)
def _modest_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    m = build_model("unet", "resnet18", 3, 1, decoder_channels=(16, 16, 8, 8, 8)).eval()
    with torch.no_grad():
        m.segmentation_head[0].weight.mul_(40.0)
    return save_model(as_loaded(m), tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    x = rng.random((5, 3, S, S), dtype=np.float32) * 0.3
    x[:, :, 16:40, 20:44] += 0.6             # bright "roofs"
    return x


def test_onnx_and_torch_agree(model_dir, batch):
    model = load_model(model_dir)
    tb = make_backend(model, "torch", patch_size=S)
    ob = make_backend(model, "onnx", patch_size=S, threads=1)
    assert isinstance(ob, OnnxBackend) and isinstance(tb, TorchBackend)
    tp, te = tb.run(batch)
    op, oe = ob.run(batch)
    assert tp is not None and op is not None
    assert op.shape == tp.shape == (5, S, S) and oe.shape == te.shape
    np.testing.assert_allclose(oe, te, rtol=1e-3, atol=1e-4 * np.abs(te).max())
    np.testing.assert_allclose(op, tp, atol=1e-4)
    assert ((op >= 0.5) == (tp >= 0.5)).mean() > 0.999
    assert 0.01 < (tp >= 0.5).mean() < 0.99          # a real mask, not a constant


def test_encoder_only_onnx_matches(model_dir, batch):
    model = load_model(model_dir)
    _, te = make_backend(model, "torch", patch_size=S).run(batch)
    eb = make_backend(model, "onnx", patch_size=S, encoder_only=True, threads=1)
    prob, ee = eb.run(batch)
    assert prob is None
    np.testing.assert_allclose(ee, te, rtol=1e-3, atol=1e-4 * np.abs(te).max())


def test_export_is_cached_next_to_the_model(model_dir):
    model = load_model(model_dir)
    path = onnx_cache_path(model, S, "avg", False)
    make_backend(model, "onnx", patch_size=S)
    assert path.is_file() and path.parent == model_dir / "onnx-cache"
    assert model.sha256[:16] in path.name and f"{S}px" in path.name
    mtime = path.stat().st_mtime_ns
    make_backend(model, "onnx", patch_size=S)          # reused, not exported again
    assert path.stat().st_mtime_ns == mtime
    assert onnx_cache_path(model, 2 * S, "avg", False) != path


def test_export_onnx_command(model_dir, tmp_path):
    out = tmp_path / "net.onnx"
    assert main(["export-onnx", str(model_dir), str(out), "--patch-size", str(S),
                 "--progress", "none"]) == 0
    assert out.is_file() and (tmp_path / "net.encoder.onnx").is_file()
    p, e = OnnxBackend(out).run(np.zeros((2, 3, S, S), np.float32))
    assert p is not None and p.shape == (2, S, S)
    _, e2 = OnnxBackend(tmp_path / "net.encoder.onnx", encoder_only=True).run(
        np.zeros((2, 3, S, S), np.float32))
    np.testing.assert_allclose(e, e2, rtol=1e-4, atol=1e-5)


def test_unknown_backend():
    with pytest.raises(ConfigurationError, match="backend 'tpu'"):
        resolve_backend("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            resolve_backend("cuda")
        assert resolve_backend("auto") == "onnx"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backend_matches_cpu(model_dir, batch):
    model = load_model(model_dir)
    cpu_p, cpu_e = TorchBackend(model, device="cpu").run(batch)
    gpu = TorchBackend(load_model(model_dir), device="cuda")
    assert gpu.amp_dtype in (torch.bfloat16, torch.float16)
    gp, ge = gpu.run(batch)
    assert gp is not None and cpu_p is not None
    assert gp.dtype == np.float32 and ge.dtype == np.float32
    assert ((gp >= 0.5) == (cpu_p >= 0.5)).mean() > 0.98    # mixed precision
    np.testing.assert_allclose(ge, cpu_e, rtol=0.05, atol=0.05 * np.abs(cpu_e).max())
    assert 1 <= gpu.suggest_batch_size(3, S) <= 256
    assert resolve_backend("auto") == "cuda"
