"""The field worker: requirements-field.lock, installed offline from its wheelhouse.

`scripts/wheelhouse.sh` (what `make wheelhouse-field` runs) downloads the locked wheels;
a fresh venv of the system Python gets them with `pip install --no-index` (pip's own
configuration switched off, so nothing but the wheelhouse can be used), and then, with
no torch importable, says it is a field worker, refuses `analyze` with what to install,
and estimates the held-out region from the tiny model's ONNX export exactly as the
torch worker does from the model folder: same patches, estimated IoU within 1e-3,
novelty within 0.5 percentile.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from segexplain.core.bundle.reader import Bundle

from ..conftest import segexplain

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PY = Path("/usr/bin/python3")
S = 64


def run(cmd: list, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 900) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def offline_env(**extra: str) -> dict[str, str]:
    """This environment without pip's configuration (no index, no find-links)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", **extra)
    return env


@pytest.fixture(scope="module")
def field(tmp_path_factory) -> dict[str, Path]:
    """{"python", "wheelhouse", "path"}: the field venv and its PYTHONPATH folder."""
    if not SYSTEM_PY.is_file():
        pytest.skip("needs the system Python 3 (/usr/bin/python3)")
    if run([SYSTEM_PY, "-c", "import torch"], check=False).returncode == 0:
        pytest.skip("the system Python has torch: a field venv would see it")
    if run([SYSTEM_PY, "-c", "import osgeo.ogr"], check=False).returncode != 0:
        pytest.skip("the system Python lacks GDAL's bindings (python3-gdal)")
    where = tmp_path_factory.mktemp("field")
    wheels = where / "wheelhouse-field"
    run(["bash", ROOT / "scripts" / "wheelhouse.sh", "requirements-field.lock", wheels],
        env=dict(os.environ, PYTHON=str(SYSTEM_PY)))
    assert (wheels / "requirements-field.lock").is_file()
    venv = where / "venv"
    run([SYSTEM_PY, "-m", "venv", "--system-site-packages", venv])
    py = venv / "bin" / "python"
    run([py, "-m", "pip", "install", "-q", "--no-index", "--find-links", wheels,
         "--require-hashes", "--ignore-installed", "-r", wheels / "requirements-field.lock"],
        env=offline_env())
    path = where / "plugins"
    path.mkdir()
    (path / "segexplain").symlink_to(ROOT)  # the plugin folder as QGIS installs it
    return {"python": py, "wheelhouse": wheels, "path": path}


def field_cli(field: dict[str, Path], *args: object, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    env = offline_env(PYTHONPATH=str(field["path"]), PYTHONUNBUFFERED="1")
    return run([field["python"], "-m", "segexplain.core.cli", *args], env=env, check=check)


def test_wheelhouse_is_the_lock_and_small(field):
    wheels = sorted(p.name for p in field["wheelhouse"].glob("*.whl"))
    lock = (ROOT / "requirements-field.lock").read_text()
    assert len(wheels) == sum(1 for ln in lock.splitlines() if ln[:1].isalpha())
    assert not any(w.startswith(("torch", "nvidia", "scikit_learn", "scipy")) for w in wheels)
    size = sum(p.stat().st_size for p in field["wheelhouse"].glob("*.whl"))
    assert size < 200 * 2**20, f"the field wheelhouse weighs {size / 2**20:.0f} MiB"


def test_field_venv_is_an_estimate_only_worker(field):
    probe = run([field["python"], "-c", "import torch"], check=False)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    rep = json.loads(field_cli(field, "check-env", "--json").stdout)
    assert rep["role"] == "field worker: estimate only" and rep["ok"] is True
    assert rep["commands"]["estimate"] and not rep["commands"]["analyze"]
    assert rep["device"]["summary"] == "no GPU: CPU with onnxruntime"
    table = field_cli(field, "check-env").stdout
    assert "worker      field worker: estimate only" in table
    check = run([field["python"], ROOT / "scripts" / "envlock.py", "check",
                 ROOT / "requirements-field.lock"], check=False)
    assert check.returncode == 0, check.stderr


def test_field_venv_explains_what_analyze_needs(field, tiny_run, tmp_path):
    proc = field_cli(field, "analyze", "--data", tiny_run.data / "train", "--model",
                     tiny_run.model, "--out", tmp_path / "a.segx", "--progress", "none",
                     check=False)
    assert proc.returncode == 2
    assert "analyze needs scikit-learn" in proc.stderr
    assert "field worker: estimate only" in proc.stderr and "requirements.lock" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "a.segx").exists()


def test_field_estimate_equals_the_torch_workers(field, tiny_run, tmp_path):
    onnx = tmp_path / "tiny.onnx"
    segexplain("export-onnx", tiny_run.model, onnx, "--patch-size", S, "--progress", "none")
    torch_est = tmp_path / "torch.segx"
    segexplain("estimate", "--data", tiny_run.data / "new", "--reference", tiny_run.bundle,
               "--model", tiny_run.model, "--backend", "torch", "--out", torch_est,
               "--progress", "none")
    field_est = tmp_path / "field.segx"
    field_cli(field, "estimate", "--data", tiny_run.data / "new", "--reference",
              tiny_run.bundle, "--model", onnx, "--out", field_est, "--progress", "none")
    f, t = Bundle(field_est), Bundle(torch_est)
    assert f.manifest["versions"].get("torch") is None  # really made without torch
    assert t.manifest["versions"]["torch"]
    for key in ("image", "row_off", "col_off", "height", "width"):
        assert list(f.patches[key]) == list(t.patches[key]), key
    assert len(f.patches["patch_id"]) > 10
    np.testing.assert_allclose(f.patches["est_iou"], t.patches["est_iou"], atol=1e-3)
    np.testing.assert_allclose(f.patches["novelty"], t.patches["novelty"], atol=0.5)
    assert np.isfinite(f.patches["est_iou"]).all()
