"""The Analyze / Estimate dialogs run the Processing algorithms (one argument builder)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from algorithm_runs import (
    staging_of,
    stagings,
    toolbox_args,
    unstaged,
    wait_run,
    worker_args,
    worker_children,
)
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProject,
    QgsRasterLayer,
    QgsTask,
)
from qgis.PyQt.QtCore import QThreadPool
from segexplain.segexplain_qgis import settings
from segexplain.segexplain_qgis.dialogs import AnalyzeDialog, EstimateDialog
from test_worker import alive, cli, polygon_layer

pytestmark = pytest.mark.qgis


# -- one argument builder -----------------------------------------------------------------
def test_dialog_and_toolbox_build_the_same_worker_arguments(plugin, tmp_path, tiny_run):
    images = sorted((tiny_run.data / "train" / "images").glob("*.tif"))[:3]
    gt = tiny_run.data / "train" / "gt"
    dlg = plugin.runs.show_analyze()
    dlg.imagery.mode.setCurrentIndex(1)  # image files
    dlg.imagery.files.setFilePath(" ".join(f'"{p}"' for p in images))
    dlg.labels.mode.setCurrentIndex(dlg.labels.modes.index("Label files"))
    dlg.labels.files.setFilePath(" ".join(f'"{gt / p.name}"' for p in images))
    dlg.model.folder.setFilePath(str(tiny_run.model))
    dlg.patch.setValue(64)
    dlg.stride.setValue(32)
    dlg.iou.setCurrentIndex(2)
    dlg.backend.setCurrentIndex(1)
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("same")
    from_dialog = dlg.parameters()
    by_hand = {"INPUT": [str(p) for p in images], "LABELS": [str(gt / p.name) for p in images],
               "MODEL": str(tiny_run.model), "PATCH_SIZE": 64, "STRIDE": 32,
               "IOU_CONVENTION": 2, "BACKEND": 1, "OUTPUT": str(tmp_path / "same")}
    d_args, d_staging = toolbox_args("segexplain:analyze", from_dialog)
    h_args, h_staging = toolbox_args("segexplain:analyze", by_hand)
    assert d_staging and h_staging and d_staging != h_staging  # three images: staged pairs
    assert unstaged(d_args, d_staging) == unstaged(h_args, h_staging) == [
        "--data", "STAGING/pairs", "--model", str(tiny_run.model), "--backend", "torch",
        "--patch-size", "64", "--iou-convention", "exclude", "--stride", "32",
        "--out", str(tmp_path / "same.segx")]
    assert not d_staging.exists() and not h_staging.exists()

    # the dialog's run goes through the algorithm and starts exactly those arguments
    before = stagings()
    run = dlg.start()
    assert run is not None, dlg.status.text()
    assert isinstance(run.task, QgsProcessingAlgRunnerTask)
    assert run.algorithm_id == "segexplain:analyze"
    started = worker_args(run)
    staging = staging_of(started)
    assert staging is not None and staging.is_dir()
    assert started[0] == "analyze" and unstaged(started[1:], staging) == unstaged(h_args,
                                                                                  h_staging)
    dlg.cancel()
    wait_run(run, 120)
    assert run.was_cancelled and run.results is None
    assert "cancelled" in dlg.status.text() and dlg.run is None and dlg.run_button.isEnabled()
    assert stagings() == before and not worker_children()
    assert not list(tmp_path.iterdir())

    # layers: a raster layer and a polygon layer (exported) give the same arguments too
    raster = QgsRasterLayer(str(images[0]), "scene")
    vector = polygon_layer()
    QgsProject.instance().addMapLayers([raster, vector])
    dlg.imagery.mode.setCurrentIndex(0)
    dlg.imagery.layer.setLayer(raster)
    dlg.labels.mode.setCurrentIndex(dlg.labels.modes.index("Vector layer (building footprints)"))
    dlg.labels.vector.setLayer(vector)
    from_dialog = dlg.parameters()
    assert from_dialog["INPUT"] == [raster.id()] and from_dialog["LABELS"] == [vector.id()]
    d_args, d_staging = toolbox_args("segexplain:analyze", from_dialog)
    h_args, h_staging = toolbox_args("segexplain:analyze", {
        **by_hand, "INPUT": [str(images[0])], "LABELS": [vector.id()]})
    assert unstaged(d_args, d_staging) == unstaged(h_args, h_staging)
    assert d_args[:4] == ["--data", str(images[0]), "--labels",
                          str(d_staging / "buildings_export.gpkg")]

    # estimate: a checkpoint with its architecture, encoder only
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"weights")
    est = plugin.runs.show_estimate()
    est.imagery.mode.setCurrentIndex(2)
    est.imagery.folder.setFilePath(str(tiny_run.data / "new"))
    est.reference.setFilePath(str(tiny_run.bundle))
    est.model.kind.setCurrentIndex(1)
    est.model.file.setFilePath(str(ckpt))
    est.model.encoder.setCurrentText("resnet18")
    est.encoder_only.setChecked(True)
    est.out_folder.setFilePath(str(tmp_path))
    est.out_name.setText("field")
    e_args, _ = toolbox_args("segexplain:estimate", est.parameters())
    h_args, _ = toolbox_args("segexplain:estimate", {
        "FOLDER": str(tiny_run.data / "new"), "REFERENCE": str(tiny_run.bundle),
        "MODEL_FILE": str(ckpt), "ENCODER": "resnet18", "ENCODER_ONLY": True,
        "OUTPUT": str(tmp_path / "field.segx")})
    assert e_args == h_args == [
        "--data", str(tiny_run.data / "new"), "--reference", str(tiny_run.bundle),
        "--model", str(ckpt), "--arch", "unet", "--encoder", "resnet18",
        "--backend", "auto", "--encoder-only", "--out", str(tmp_path / "field.segx")]
    ckpt.unlink()


def test_run_cancelled_before_it_starts_leaves_nothing(plugin, tmp_path, tiny_run):
    """All task threads busy: the run waits in the queue; Cancel there removes its inputs."""
    images = sorted((tiny_run.data / "train" / "images").glob("*.tif"))[:2]
    dlg = plugin.runs.show_analyze()
    dlg.imagery.mode.setCurrentIndex(1)
    dlg.imagery.files.setFilePath(" ".join(f'"{p}"' for p in images))
    dlg.model.folder.setFilePath(str(tiny_run.model))
    dlg.out_folder.setFilePath(str(tmp_path))
    before = stagings()
    pool = QThreadPool.globalInstance()  # the task manager's threads
    threads = pool.maxThreadCount()
    gate = threading.Event()
    blocker = QgsTask.fromFunction("hold the only task thread", lambda _task: gate.wait(60))
    try:
        pool.setMaxThreadCount(1)
        QgsApplication.taskManager().addTask(blocker)
        run = dlg.start()
        assert run is not None, dlg.status.text()
        staging = staging_of(worker_args(run))
        assert run.task.status() == QgsTask.TaskStatus.Queued and staging.is_dir()
        dlg.cancel()
        wait_run(run, 5)  # while the only thread is still held
        assert run.was_cancelled and dlg.run is None
    finally:
        gate.set()
        pool.setMaxThreadCount(threads)
    assert not staging.exists() and stagings() == before and not list(tmp_path.iterdir())
    assert not worker_children()


def test_dialog_input_errors_stay_in_the_dialog(plugin, tmp_path):
    tasks = QgsApplication.taskManager().count()
    before = stagings()
    dlg = plugin.runs.show_estimate()
    assert isinstance(dlg, EstimateDialog)
    dlg.imagery.mode.setCurrentIndex(2)
    dlg.imagery.folder.setFilePath(str(tmp_path))
    dlg.reference.setFilePath(str(tmp_path / "none.segx"))
    assert dlg.start() is None and dlg.run is None
    assert "reference" in dlg.status.text() and "manifest.json" in dlg.status.text()
    assert dlg.run_button.isEnabled()

    ana = plugin.runs.show_analyze()
    assert isinstance(ana, AnalyzeDialog)
    ana.imagery.mode.setCurrentIndex(2)
    ana.imagery.folder.setFilePath(str(tmp_path))
    ana.model.folder.setFilePath(str(tmp_path))
    ana.patch.setValue(64)
    ana.stride.setValue(128)  # the algorithm refuses it: the message shows in the dialog
    ana.out_folder.setFilePath(str(tmp_path))
    assert ana.start() is None and ana.run is None
    assert "stride 128 px is larger than the patch size 64 px" in ana.status.text()
    assert "stride 128" in ana.log.toPlainText()
    ana.stride.setValue(0)
    ana.imagery.mode.setCurrentIndex(1)
    ana.imagery.files.setFilePath(f'"{tmp_path / "a.tif"}" "{tmp_path / "b.tif"}"')
    assert ana.start() is None and "no such file" in ana.status.text()
    assert QgsApplication.taskManager().count() == tasks and stagings() == before


# -- real runs ----------------------------------------------------------------------------
@pytest.mark.slow
def test_analyze_dialog_runs_in_background_and_opens_bundle(plugin, tmp_path, tiny_run,
                                                            qgis_iface):
    images = sorted((tiny_run.data / "train" / "images").glob("*.tif"))[:4]
    dlg = plugin.runs.show_analyze()
    assert isinstance(dlg, AnalyzeDialog) and dlg.isVisible()
    dlg.imagery.mode.setCurrentIndex(1)  # image files
    dlg.imagery.files.setFilePath(" ".join(f'"{p}"' for p in images))
    dlg.labels.mode.setCurrentIndex(dlg.labels.modes.index("Label files"))
    gt = tiny_run.data / "train" / "gt"
    dlg.labels.files.setFilePath(" ".join(f'"{gt / p.name}"' for p in reversed(images)))
    dlg.model.folder.setFilePath(str(tiny_run.model))
    dlg.iou.setCurrentIndex(2)  # exclude
    dlg.patch.setValue(64)  # 4 small tiles -> 64 patches, enough for cross-validation
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("four")
    run = dlg.start()
    assert run is not None, dlg.status.text()
    staging = staging_of(worker_args(run))
    assert staging is not None and staging.is_dir() and not dlg.run_button.isEnabled()
    stages = []
    run.feedback.stageChanged.connect(stages.append)
    wait_run(run, 600)
    bundle = tmp_path / "four.segx"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["complete"] and manifest["iou_convention"] == "exclude"
    assert manifest["patch_size"] == 64 and manifest["n_patches"] == 64
    assert sorted(Path(im["path"]) for im in manifest["images"]) == sorted(
        p.resolve() for p in images)  # real files, not the staging links
    assert run.results["N_PATCHES"] == 64 and Path(run.results["OUTPUT"]) == bundle
    assert not staging.exists() and "infer" in stages
    assert dlg.progress.value() == 100 and dlg.run_button.isEnabled()
    assert run.feedback.stage_threads and threading.get_ident() not in run.feedback.stage_threads
    assert plugin.dock is not None and plugin.dock.base is not None
    assert Path(plugin.dock.base.key) == bundle.resolve()


@pytest.mark.slow
def test_dialog_cancel_stops_worker_and_leaves_no_bundle(plugin, tmp_path, tiny_run,
                                                         qgis_iface):
    dlg = plugin.runs.show_analyze()
    dlg.imagery.mode.setCurrentIndex(2)
    dlg.imagery.folder.setFilePath(str(tiny_run.data / "train"))
    dlg.model.folder.setFilePath(str(tiny_run.model))
    dlg.patch.setValue(64)
    dlg.stride.setValue(16)
    dlg.backend.setCurrentIndex(1)  # torch
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("cancelled")
    qgis_iface.messageBar().clear_messages()
    run = dlg.start()
    assert run is not None, dlg.status.text()
    seen: dict[str, list] = {"partial": [], "workers": []}

    def on_progress(_percent):
        if dlg.status.text().startswith("infer") and not seen["workers"]:
            seen["partial"] = list(tmp_path.glob("cancelled.segx.partial-*"))
            seen["workers"] = worker_children()
            dlg.cancel()

    run.feedback.progressChanged.connect(on_progress)
    wait_run(run, 600)
    assert seen["workers"], "the run ended before it could be cancelled mid-inference"
    assert seen["partial"], "no half bundle was being written when cancelled"
    assert run.was_cancelled and run.results is None
    assert not any(alive(pid) for pid in seen["workers"]) and not worker_children()
    assert sorted(tmp_path.iterdir()) == []
    assert dlg.status.text() == "cancelled; no bundle was written"
    assert any("cancelled; no bundle was written" in m
               for m in qgis_iface.messageBar().get_messages(Qgis.Info))


@pytest.mark.slow
def test_estimate_dialog_prefills_model_and_opens_estimate(plugin, tmp_path, tiny_run):
    dlg = plugin.runs.show_estimate()
    dlg.reference.setFilePath(str(tiny_run.bundle))
    manifest = json.loads((tiny_run.bundle / "manifest.json").read_text())
    assert Path(dlg.model.folder.filePath()) == Path(manifest["model"]["path"])
    assert f"patches of {manifest['patch_size']} px" in dlg.from_reference.text()
    assert manifest["iou_convention"] in dlg.from_reference.text()
    dlg.imagery.mode.setCurrentIndex(2)  # folder
    dlg.imagery.folder.setFilePath(str(tiny_run.data / "new"))
    dlg.encoder_only.setChecked(True)
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("field")
    run = dlg.start()
    assert run is not None, dlg.status.text()
    wait_run(run, 600)
    est = json.loads((tmp_path / "field.segx" / "manifest.json").read_text())
    assert est["kind"] == "estimate" and run.results["N_PATCHES"] == est["n_patches"]
    assert plugin.dock is not None and any(
        Path(s.key) == (tmp_path / "field.segx").resolve() for s in plugin.dock.sessions)


@pytest.mark.slow
def test_onnx_model_choice_runs_analyze_and_estimate_dialogs(plugin, tmp_path, tiny_run):
    """The dialogs' "ONNX file" model kind: the file alone analyses and estimates."""
    onnx = tmp_path / "model" / "tiny.onnx"
    cli("export-onnx", tiny_run.model, onnx, "--patch-size", 64)
    dlg = plugin.runs.show_analyze()
    dlg.imagery.mode.setCurrentIndex(2)  # folder (labels found with the imagery)
    dlg.imagery.folder.setFilePath(str(tiny_run.data / "train"))
    dlg.model.kind.setCurrentIndex([k for k, _ in dlg.model.KINDS].index("onnx"))
    dlg.model.file.setFilePath(str(onnx))
    dlg.patch.setValue(64)
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("from-onnx")
    run = dlg.start()
    assert run is not None, dlg.status.text()
    args = worker_args(run)
    assert args[args.index("--model") + 1] == str(onnx)
    assert args[args.index("--backend") + 1] == "onnx"
    wait_run(run, 600)
    assert run.results is not None, run.message
    ref = tmp_path / "from-onnx.segx"
    manifest = json.loads((ref / "manifest.json").read_text())
    assert manifest["complete"] and manifest["model"]["format"] == "onnx"
    assert Path(manifest["model"]["path"]) == onnx.resolve()
    assert Path(plugin.dock.base.key) == ref.resolve()

    est = plugin.runs.show_estimate()
    est.reference.setFilePath(str(ref))  # pre-fills the ONNX file it was made with
    assert est.model.kind.currentData() == "onnx"
    assert Path(est.model.file.filePath()) == onnx.resolve()
    est.imagery.mode.setCurrentIndex(2)
    est.imagery.folder.setFilePath(str(tiny_run.data / "new"))
    est.out_folder.setFilePath(str(tmp_path))
    est.out_name.setText("field")
    run = est.start()
    assert run is not None, est.status.text()
    wait_run(run, 600)
    assert run.results is not None, run.message
    em = json.loads((tmp_path / "field.segx" / "manifest.json").read_text())
    assert em["kind"] == "estimate" and em["model"]["format"] == "onnx"
    assert em["n_patches"] > 0


def test_failed_run_explained_in_dialog_and_message_bar(plugin, tmp_path, tiny_run,
                                                        qgis_iface, monkeypatch):
    """A worker Python that cannot run the core: the explained error, nothing written."""
    monkeypatch.setattr(settings, "worker_python", lambda: str(tmp_path / "no" / "python"))
    qgis_iface.messageBar().clear_messages()
    dlg = plugin.runs.show_analyze()
    dlg.imagery.mode.setCurrentIndex(2)
    dlg.imagery.folder.setFilePath(str(tiny_run.data / "train"))
    dlg.model.folder.setFilePath(str(tiny_run.model))
    dlg.out_folder.setFilePath(str(tmp_path))
    dlg.out_name.setText("broken")
    run = dlg.start()
    assert run is not None, dlg.status.text()
    wait_run(run, 120)
    assert run.results is None and not run.was_cancelled
    assert "cannot start the worker Python" in run.message and "Settings" in run.message
    assert "\n" not in run.message and "Traceback" not in run.message
    assert dlg.status.text() == run.message
    assert run.message in " ".join(qgis_iface.messageBar().get_messages(Qgis.Critical))
    assert not list(tmp_path.glob("broken.segx*"))
