"""`segexplain check-env`: works with and without torch, and says what to install."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from segexplain.core.commands import check_env

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PY = Path("/usr/bin/python3")


def run_check(python: str, env: dict[str, str] | None = None, *extra: str):
    return subprocess.run([python, "-m", "segexplain.core.cli", "check-env", *extra],
                          capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow  # imports torch, smp, onnxruntime and sklearn in a fresh process
def test_worker_environment_reports_everything():
    proc = run_check(sys.executable, None, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)  # stdout holds exactly one JSON object
    assert rep["ok"] is True and rep["missing"] == [] and rep["install"] == []
    assert rep["python"]["executable"] == sys.executable
    for module in ("torch", "onnxruntime", "segmentation_models_pytorch", "rasterio",
                   "sklearn"):
        assert rep["packages"][module]["ok"], module
        assert rep["packages"][module]["version"][0].isdigit()
    import torch

    if torch.cuda.is_available():
        assert rep["device"]["cuda"] and rep["device"]["summary"].startswith("GPU: ")
    else:
        assert rep["device"]["summary"] == "no GPU: CPU with onnxruntime"
    assert all(rep["commands"].values()) and rep["role"] == "full worker"


@pytest.mark.skipif(not SYSTEM_PY.is_file(), reason="needs a system Python without torch")
def test_python_without_torch_says_what_to_install(tmp_path):
    probe = subprocess.run([str(SYSTEM_PY), "-c", "import torch"], capture_output=True)
    if probe.returncode == 0:
        pytest.skip("the system Python has torch")
    (tmp_path / "segexplain").symlink_to(ROOT)  # the plugin as installed: a folder 'segexplain'
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = run_check(str(SYSTEM_PY), env, "--json")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert rep["ok"] is False and "torch" in rep["missing"]
    assert rep["packages"]["torch"]["error"] == "ModuleNotFoundError: No module named 'torch'"
    assert rep["commands"]["analyze"] is False and rep["commands"]["info"] is True
    assert rep["role"] == "incomplete"
    pins = check_env.read_pins(ROOT)
    assert pins["torch"] in rep["install"][0] and str(SYSTEM_PY) in rep["install"][0]
    assert any(f"--require-hashes -r {ROOT / 'requirements.lock'}" in line
               for line in rep["install"])
    assert any("field worker" in line and str(ROOT / "requirements-field.lock") in line
               for line in rep["install"])
    table = run_check(str(SYSTEM_PY), env)
    assert "MISSING (ModuleNotFoundError: No module named 'torch')" in table.stdout
    assert "to install the missing packages:" in table.stdout
    assert table.stdout.strip().splitlines()[1].startswith("device      no GPU")


def test_pins_and_versions(tmp_path):
    (tmp_path / "requirements.txt").write_text(
        "# comment\nnumpy==1.26.4\ntorch==9.9.9  # pinned\n-r other.txt\nscipy>=1.10\n")
    pins = check_env.read_pins(tmp_path)
    assert pins["torch"] == "torch==9.9.9" and pins["scipy"] == "scipy>=1.10"
    assert pins["scikit-learn"] == check_env.FALLBACK_PINS["scikit-learn"]
    assert check_env._version_tuple("2.14.1+cu130") == (2, 14)
    assert check_env._version_tuple("1.8.5") < check_env.MIN_VERSIONS["shapely"]
    assert check_env._version_tuple("unknown") == (0,)


def test_report_formats_missing_and_old_packages(monkeypatch):
    def fake(module):
        if module in ("onnxruntime", "torch"):
            return {"ok": False, "version": None, "error": "ModuleNotFoundError: x"}
        if module == "shapely":
            return {"ok": False, "version": "1.8.5",
                    "error": "version 1.8.5 is too old, need >= 2.0"}
        return {"ok": True, "version": "1.0", "error": None}

    monkeypatch.setattr(check_env, "_probe", fake)
    rep = check_env.report(ROOT)
    assert rep["missing"] == ["shapely", "torch", "onnxruntime"]
    assert rep["commands"] == {"info": True, "export-tasks": True, "estimate": False,
                               "analyze": False, "train": False}
    assert '"shapely==' in rep["install"][0] and '"onnxruntime==' in rep["install"][0]
    assert rep["device"]["summary"] == "no GPU and no inference back end"
    text = check_env.format_report(rep)
    assert "version 1.8.5 is too old, need >= 2.0" in text
    assert "MISSING (ModuleNotFoundError: x)" in text
    assert "ready for   info, export-tasks" in text


def test_field_worker_role(monkeypatch):
    """No torch, smp or scikit-learn but onnxruntime: a field worker, and that is fine."""
    absent = {"torch", "torchvision", "segmentation_models_pytorch", "safetensors", "sklearn"}

    def fake(module):
        if module in absent:
            return {"ok": False, "version": None, "error": "ModuleNotFoundError: x"}
        return {"ok": True, "version": "1.0", "error": None}

    monkeypatch.setattr(check_env, "_probe", fake)
    rep = check_env.report(ROOT)
    assert rep["role"] == "field worker: estimate only" and rep["ok"] is True
    assert rep["commands"]["estimate"] and not rep["commands"]["analyze"]
    assert not rep["commands"]["train"]
    assert rep["device"]["summary"] == "no GPU: CPU with onnxruntime"
    text = check_env.format_report(rep)
    assert "worker      field worker: estimate only" in text
    assert "to make it a full worker" in text and "requirements.lock" in text
    absent.add("onnxruntime")  # neither back end: nothing can estimate
    rep = check_env.report(ROOT)
    assert rep["role"] == "incomplete" and rep["ok"] is False
