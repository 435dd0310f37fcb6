"""The Processing provider: registered by the plugin, runs in QGIS, the modeler and qgis_process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterFile,
    QgsVectorLayer,
)

pytestmark = pytest.mark.qgis
ROOT = Path(__file__).resolve().parents[2]
ALGS = ("segexplain:analyze", "segexplain:estimate", "segexplain:exporttasks")


def qgis_process() -> str | None:
    """qgis_process itself (Debian's wrapper passes --noversioncheck, which it rejects)."""
    for name in ("qgis_process.bin", "qgis_process"):
        found = shutil.which(name)
        if found:
            return found
    return None


def task_counts(path: Path) -> dict[str, int]:
    layer = QgsVectorLayer(str(path), "tasks", "ogr")
    assert layer.isValid(), path
    counts: dict[str, int] = {}
    for f in layer.getFeatures():
        counts[f["task"]] = counts.get(f["task"], 0) + 1
    return counts


def test_provider_registered_and_removed(qgis_iface, qgis_new_project):
    from segexplain import classFactory

    reg = QgsApplication.processingRegistry()
    p = classFactory(qgis_iface)
    p.initGui()
    try:
        for alg_id in ALGS:
            alg = reg.algorithmById(alg_id)
            assert alg is not None, alg_id
            assert alg.shortHelpString()
        params = {d.name() for d in reg.algorithmById("segexplain:analyze").parameterDefinitions()}
        assert {"INPUT", "FOLDER", "LABELS", "MODEL", "MODEL_FILE", "PATCH_SIZE", "STRIDE",
                "IOU_CONVENTION", "BACKEND", "OUTPUT"} <= params
    finally:
        p.unload()
    assert all(reg.algorithmById(a) is None for a in ALGS)


def test_export_tasks_in_qgis_and_in_a_model(plugin, tiny_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SEGEXPLAIN_PYTHON", sys.executable)
    reg = QgsApplication.processingRegistry()
    alg = reg.createAlgorithmById("segexplain:exporttasks")
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    out = tmp_path / "tasks.gpkg"
    results, ok = alg.run({"BUNDLE": str(tiny_run.bundle), "OUTPUT": str(out)}, context,
                          feedback)
    assert ok, feedback.textLog()
    counts = task_counts(out)
    assert sum(counts.values()) == json.loads(
        (tiny_run.bundle / "manifest.json").read_text())["n_patches"]
    assert results["MAP"] == counts.get("map", 0) and results["SKIP"] == counts.get("skip", 0)

    # the same algorithm as a step of a graphical model
    model = QgsProcessingModelAlgorithm("tasks from a bundle", "segexplain tests")
    model.addModelParameter(QgsProcessingParameterFile(
        "bundle", "Bundle", QgsProcessingParameterFile.Behavior.Folder),
        QgsProcessingModelParameter("bundle"))
    child = QgsProcessingModelChildAlgorithm("segexplain:exporttasks")
    child.setChildId("tasks")
    child.addParameterSources("BUNDLE", [
        QgsProcessingModelChildParameterSource.fromModelParameter("bundle")])
    mo = QgsProcessingModelOutput("tasks_out")
    mo.setChildOutputName("OUTPUT")
    mo.setChildId("tasks")
    child.setModelOutputs({"tasks_out": mo})
    model.addChildAlgorithm(child)
    model_out = tmp_path / "model_tasks.geojson"
    results, ok = model.run({"bundle": str(tiny_run.bundle), "tasks:tasks_out": str(model_out)},
                            QgsProcessingContext(), feedback)
    assert ok, feedback.textLog()
    assert task_counts(model_out) == counts


def test_bad_parameters_raise_processing_errors(plugin, tmp_path):
    from qgis.core import QgsProcessingException

    alg = QgsApplication.processingRegistry().createAlgorithmById("segexplain:analyze")
    feedback = QgsProcessingFeedback()
    params = {"FOLDER": str(tmp_path), "OUTPUT": str(tmp_path / "x.segx")}
    with pytest.raises(QgsProcessingException, match="exactly one of"):
        alg.processAlgorithm(params, QgsProcessingContext(), feedback)
    assert not list(tmp_path.glob("x.segx*"))
    # run as the toolbox and the dialogs run it: refused while it is prepared
    params.update({"MODEL": str(tmp_path), "PATCH_SIZE": 64, "STRIDE": 128})
    results, ok = alg.run(params, QgsProcessingContext(), feedback)
    assert not ok and "stride 128 px is larger than the patch size 64 px" in feedback.textLog()
    assert not list(tmp_path.glob("x.segx*"))


@pytest.mark.slow
def test_qgis_process_runs_export_tasks(tiny_run, tmp_path):
    exe = qgis_process()
    if exe is None:
        pytest.skip("qgis_process is not installed")
    profile = tmp_path / "config"
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "segexplain").symlink_to(ROOT)  # the installed layout: a folder 'segexplain'
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(profile), QT_QPA_PLATFORM="offscreen",
               SEGEXPLAIN_PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)
    enable = subprocess.run([exe, "plugins", "enable", "segexplain"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert enable.returncode == 0, enable.stderr[-2000:]
    out = tmp_path / "tasks.gpkg"
    proc = subprocess.run([exe, "--json", "run", "segexplain:exporttasks", "--",
                           f"BUNDLE={tiny_run.bundle}", f"OUTPUT={out}"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    doc = json.loads(proc.stdout[proc.stdout.index("{"):])
    counts = task_counts(out)
    assert doc["results"]["MAP"] == counts.get("map", 0)
    assert doc["results"]["CHECK"] == counts.get("check", 0)
    assert Path(doc["results"]["OUTPUT"]).resolve() == out.resolve()
    # analyze: the same checks as the dialogs (one argument builder), nothing written
    refused = subprocess.run([exe, "run", "segexplain:analyze", "--",
                              f"FOLDER={tiny_run.data / 'train'}", f"MODEL={tiny_run.model}",
                              "PATCH_SIZE=64", "STRIDE=128", f"OUTPUT={tmp_path / 'x.segx'}"],
                             env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "stride 128 px is larger than the patch size 64 px" in refused.stdout + refused.stderr
    assert not list(tmp_path.glob("x.segx*"))
