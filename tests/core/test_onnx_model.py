"""An ONNX file from `export-onnx` is a model of its own: metadata, analyze, estimate.

The tiny run's real U-Net is exported once (64 px, the tiny run's patch size); the
file alone (no model folder, no torch model) must give the engine what it needs, and
the same patches and figures as the model folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from segexplain.core.analytics.estimators import spearman
from segexplain.core.bundle.reader import Bundle
from segexplain.core.errors import ConfigurationError, DependencyError, ModelLoadError
from segexplain.core.model import loading, spec

from ..conftest import segexplain

S = 64


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    segexplain("export-onnx", tiny_run.model, out, "--patch-size", S, "--progress", "none")
    return out


def test_metadata_describes_the_model(exported, tiny_run):
    m = spec.load_onnx_model(exported)
    cfg = json.loads((tiny_run.model / "config.json").read_text())
    assert (m.arch, m.encoder, m.in_channels, m.classes) == (
        "unet", cfg["encoder_name"], 3, 1)
    assert (m.output_stride, m.patch_size, m.pooling) == (32, S, "avg")
    assert m.outputs == ("prob", "embedding") and not m.encoder_only
    from segexplain.core.files import file_sha256

    assert m.sha256 == file_sha256(tiny_run.model / "model.safetensors")
    assert m.onnx_sha256 == file_sha256(exported)
    assert "255" in m.metadata["normalization"]
    enc = spec.load_onnx_model(spec.encoder_path(exported))
    assert enc.encoder_only and enc.sha256 == m.sha256
    assert m.network_for(encoder_only=True) == enc.path
    assert m.network_for(encoder_only=False) == m.path


def test_settings_the_file_cannot_serve_are_refused(exported):
    m = spec.load_onnx_model(exported)
    with pytest.raises(ConfigurationError, match=r"takes 64 px patches.*--patch-size 64"):
        m.check_settings(128, "avg", False)
    with pytest.raises(ConfigurationError, match="--pooling max"):
        m.check_settings(S, "max", False)
    enc = spec.load_onnx_model(spec.encoder_path(exported))
    with pytest.raises(ConfigurationError, match="encoder-only"):
        enc.check_settings(S, "avg", False)
    enc.check_settings(S, "avg", True)


def test_foreign_onnx_is_refused_with_what_to_do(tmp_path, exported):
    import onnx

    proto = onnx.load(str(exported))
    del proto.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ModelLoadError, match="segexplain export-onnx"):
        spec.load_onnx_model(bare)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        spec.load_onnx_model(junk)


def test_analyze_and_estimate_take_the_onnx_file(exported, tiny_run, tmp_path):
    """The ONNX file gives the folder's patches and figures; --backend torch is refused."""
    ref = tmp_path / "ref.segx"
    segexplain("analyze", "--data", tiny_run.data / "train", "--model", exported,
               "--out", ref, "--patch-size", S, "--progress", "none")
    a, b = Bundle(ref), Bundle(tiny_run.bundle)
    assert a.manifest["model"]["format"] == "onnx"
    assert a.manifest["model"]["sha256"] == b.manifest["model"]["sha256"]
    assert a.manifest["n_patches"] == b.manifest["n_patches"]
    np.testing.assert_allclose(a.patches["iou"], b.patches["iou"], atol=2e-3)
    # an estimate from the ONNX file against the folder's reference (same weights' sha)
    est = tmp_path / "est.segx"
    segexplain("estimate", "--data", tiny_run.data / "new", "--reference", tiny_run.bundle,
               "--model", exported, "--out", est, "--progress", "none")
    e, t = Bundle(est), Bundle(tiny_run.estimate)
    assert list(e.patches["patch_id"]) == list(t.patches["patch_id"])
    np.testing.assert_allclose(e.patches["est_iou"], t.patches["est_iou"], atol=1e-3)
    bad = tmp_path / "bad.segx"
    with pytest.raises(AssertionError, match="--backend torch cannot run the ONNX file"):
        segexplain("analyze", "--data", tiny_run.data / "train", "--model", exported,
                   "--out", bad, "--patch-size", S, "--backend", "torch", "--progress", "none")
    assert not bad.exists()


def test_export_refuses_an_onnx_input(exported, tmp_path):
    with pytest.raises(AssertionError, match="already an ONNX file"):
        segexplain("export-onnx", exported, tmp_path / "again.onnx", "--progress", "none")


def test_missing_packages_raise_dependency_errors(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec

    def without(*names):
        def find(name, *a, **k):
            return None if name in names else real(name, *a, **k)
        return find

    monkeypatch.setattr(importlib.util, "find_spec", without("torch", "sklearn"))
    with pytest.raises(DependencyError, match=r"field worker.*export-onnx|ONNX export"):
        spec.require_torch("analyze --model FOLDER")
    with pytest.raises(DependencyError, match="requirements.lock"):
        loading.load_any(tmp_path / "model")
    from segexplain.core.commands._common import require

    with pytest.raises(DependencyError, match=r"scikit-learn.*field worker: estimate only"):
        require("analyze", {"sklearn": "scikit-learn"}, "PCA")
    monkeypatch.setattr(importlib.util, "find_spec", without("onnxruntime"))
    with pytest.raises(DependencyError, match="requirements-field.lock"):
        spec.require_onnxruntime("x.onnx")


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = rng.integers(0, 6, 200).astype(float)  # many ties
    b = a + rng.normal(0, 2, 200)
    b[:20] = b[0]
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)
    assert np.isnan(spearman(np.ones(5), np.arange(5.0)))


def test_copied_onnx_file_keeps_working_alone(exported, tmp_path):
    """The file describes itself: copied away from the model folder it still loads."""
    lone = tmp_path / "elsewhere" / "model.onnx"
    lone.parent.mkdir()
    shutil.copy(exported, lone)
    m = spec.load_onnx_model(lone)
    assert m.path == lone.resolve() and m.network_for(encoder_only=True) == m.path
