"""Runs from QGIS: the worker process, the QgsTask, settings, inputs (dialogs: test_dialogs)."""

from __future__ import annotations

import os
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr
from qgis.core import (
    Qgis,
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsRasterLayer,
    QgsTask,
    QgsVectorLayer,
)
from segexplain.core.errors import CancelledError, InputError, WorkerError
from segexplain.segexplain_qgis import inputs, process, settings
from segexplain.segexplain_qgis.worker import (
    CoreTask,
    StageProgress,
    WorkerRun,
    cleanup_partials,
    explain_failure,
    parse_line,
    worker_command,
)

pytestmark = pytest.mark.qgis
VENV_PY = sys.executable
SYSTEM_PY = "/usr/bin/python3"
ROOT = Path(__file__).resolve().parents[2]


def cli(*args) -> None:
    """The core command line in the worker environment (never torch inside QGIS)."""
    import subprocess

    cmd = [VENV_PY, "-m", "segexplain.core.cli", *map(str, args), "--progress", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}"


def wait_task(task: QgsTask, timeout: float = 600) -> None:
    """Let the task manager run `task` to its end (finished() has run)."""
    ended = []
    task.taskCompleted.connect(lambda: ended.append("ok"))
    task.taskTerminated.connect(lambda: ended.append("terminated"))
    deadline = time.monotonic() + timeout
    while not ended and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QgsApplication.processEvents()
    assert ended, f"task {task.description()} did not end within {timeout} s"


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(
        f"/proc/{pid}/status").read_text().lower()


def write_tif(path: Path, size: int = 64) -> Path:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((500000, 0.3, 0, 5000000, 0, -0.3))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds.SetProjection(srs.ExportToWkt())
    ds.GetRasterBand(1).WriteArray(np.random.default_rng(0).integers(0, 255, (size, size),
                                                                      dtype=np.uint8))
    ds = None
    return path


def polygon_layer() -> QgsVectorLayer:
    """A memory layer of building footprints (not a file: what is given is exported)."""
    mem = QgsVectorLayer("Polygon?crs=EPSG:32633", "buildings", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromWkt(
        "POLYGON((500001 4999999, 500005 4999999, 500005 4999995, 500001 4999995, "
        "500001 4999999))"))
    mem.dataProvider().addFeatures([f])
    return mem


def segexplain_link(tmp_path: Path) -> Path:
    """An 'installed' plugin folder: tmp/segexplain -> the checkout."""
    link = tmp_path / "plugins" / "segexplain"
    link.parent.mkdir()
    link.symlink_to(Path(settings.__file__).resolve().parents[1])
    return link


# -- pure parts -------------------------------------------------------------------------
def test_command_env_and_default_python(tmp_path, monkeypatch):
    assert worker_command("py", "analyze", ["--data", tmp_path]) == [
        "py", "-m", "segexplain.core.cli", "analyze", "--data", str(tmp_path),
        "--progress", "jsonl"]
    plugin = segexplain_link(tmp_path)
    env = settings.worker_env(plugin, {"PYTHONHOME": "/qgis/py", "PYTHONPATH": "/qgis/lib",
                                       "PATH": "/bin"})
    assert env["PYTHONPATH"] == str(plugin.parent) and "PYTHONHOME" not in env
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"
    # a checkout under another name relies on the venv's own `segexplain` link
    assert "PYTHONPATH" not in settings.worker_env(tmp_path / "main", {"PYTHONPATH": "/x"})
    venv_py = settings.venv_python(tmp_path / "plug" / ".venv")
    venv_py.parent.mkdir(parents=True)
    venv_py.write_text("")
    assert settings.default_python(tmp_path / "plug", {}) == str(venv_py)
    assert settings.default_python(tmp_path / "plug", {"SEGEXPLAIN_PYTHON": "/opt/py"}) == \
        "/opt/py"
    assert Path(settings.default_python(tmp_path / "other", {})).name.startswith("python")


def test_settings_roundtrip(qgis_app):
    settings.set_worker_python("/opt/somewhere/python")
    try:
        assert settings.worker_python() == "/opt/somewhere/python"
    finally:
        settings.set_worker_python("")
    assert settings.worker_python() == settings.default_python()


def test_parse_line_and_monotone_progress():
    assert parse_line('{"event": "stage", "stage": "infer", "total": 4}\n')["stage"] == "infer"
    assert parse_line("plain text\n") == {"event": "log", "level": "output",
                                          "message": "plain text"}
    assert parse_line('{"no": "event"}')["event"] == "log"
    sp = StageProgress()
    seen = [sp.update({"event": "stage", "stage": "load model", "total": 0})]
    seen.append(sp.update({"event": "stage", "stage": "infer", "total": 10}))
    for done in (2, 5, 10):
        seen.append(sp.update({"event": "progress", "stage": "infer", "done": done,
                               "total": 10}))
    seen.append(sp.update({"event": "stage", "stage": "something new", "total": 0}))
    seen.append(sp.update({"event": "stage", "stage": "pca", "total": 1}))
    assert seen == sorted(seen) and 50 < seen[4] < 99
    assert sp.update({"event": "done", "result": {}}) == 100


def test_explain_failure_says_what_to_do():
    torch = explain_failure("/usr/bin/python3", 1, {
        "event": "error", "error": "RuntimeError",
        "message": "unexpected ModuleNotFoundError: No module named 'torch' (run again...)"}, [])
    assert "cannot import torch" in torch and "pip install" in torch and "Settings" in torch
    dep = explain_failure("/opt/field/python", 2, {
        "event": "error", "error": "DependencyError",
        "message": "analyze needs scikit-learn (PCA), which this Python lacks: install X"}, [])
    assert dep.startswith("the worker Python /opt/field/python: analyze needs scikit-learn")
    assert "Settings" in dep
    core = explain_failure("py", 2, {"event": "error", "error": "GridMismatchError",
                                     "message": "label x.tif: CRS differs; reproject it"}, [])
    assert core == "label x.tif: CRS differs; reproject it"
    usage = explain_failure("py", 2, None, ["usage: segexplain analyze ...",
                                            "segexplain analyze: error: unrecognized "
                                            "arguments: --arch unet"])
    assert "--arch unet" in usage and "update" in usage
    killed = explain_failure("py", -9, None, [])
    assert "signal 9" in killed and "out of memory" in killed
    other = explain_failure("py", 3, None, ["Traceback ...", "Boom: it broke"])
    assert "Boom: it broke" in other and "status 3" in other


def test_cleanup_partials(tmp_path):
    out = tmp_path / "run.segx"
    dead = tmp_path / "run.segx.partial-999999999"
    mine = tmp_path / f"run.segx.partial-{os.getpid()}"
    other = tmp_path / "other.segx.partial-999999999"
    for d in (dead, mine, other):
        (d / "arrays").mkdir(parents=True)
    old = tmp_path / "run.segx.old-999999999"
    (old / "arrays").mkdir(parents=True)
    (old / "manifest.json").write_text("{}")
    removed = cleanup_partials(out, [])
    assert removed == [dead] and mine.exists() and other.exists()
    assert (out / "manifest.json").is_file() and not old.exists()  # old bundle put back
    assert cleanup_partials(out, [os.getpid()]) == [mine]


# -- inputs -----------------------------------------------------------------------------
def test_data_args_single_folder_and_staged_pairs(tmp_path):
    a, b = write_tif(tmp_path / "austin1.tif"), write_tif(tmp_path / "vienna1.tif")
    la, lb = write_tif(tmp_path / "austin1_gt.tif"), write_tif(tmp_path / "vienna1_mask.tif")
    assert inputs.data_args(images=[a], labels=[la]).args == [
        "--data", str(a), "--labels", str(la)]
    assert inputs.data_args(folder=tmp_path).args == ["--data", str(tmp_path)]
    staged = inputs.data_args(images=[a, b], labels=[lb, la], staging=tmp_path / "stage")
    pairs = Path(staged.args[1])
    assert staged.args[0] == "--data" and staged.staging == tmp_path / "stage"
    assert sorted(p.name for p in pairs.iterdir()) == [
        "austin1.tif", "austin1_label.tif", "vienna1.tif", "vienna1_label.tif"]
    assert (pairs / "vienna1_label.tif").resolve() == lb.resolve()  # matched by name
    one_vector = tmp_path / "footprints.geojson"
    one_vector.write_text('{"type": "FeatureCollection", "features": []}')
    shared = inputs.data_args(images=[a, b], labels=[one_vector], staging=tmp_path / "s2")
    assert (Path(shared.args[1]) / "austin1_label.geojson").resolve() == one_vector
    with pytest.raises(InputError, match="2 images but 3 label files"):
        inputs.data_args(images=[a, b], labels=[la, lb, one_vector], staging=tmp_path / "s3")
    with pytest.raises(InputError, match="no such file"):
        inputs.data_args(images=[tmp_path / "missing.tif"])


def test_layers_to_files(tmp_path, qgis_new_project):
    tif = write_tif(tmp_path / "scene.tif")
    assert inputs.raster_layer_file(QgsRasterLayer(str(tif), "scene")) == tif
    mem = polygon_layer()
    out = inputs.vector_layer_file(mem, tmp_path / "stage")
    back = QgsVectorLayer(str(out), "back", "ogr")
    assert out.suffix == ".gpkg" and back.featureCount() == 1
    assert back.crs().authid() == "EPSG:32633"
    gj = tmp_path / "b.geojson"
    gj.write_text('{"type": "FeatureCollection", "features": []}')
    assert inputs.vector_layer_file(QgsVectorLayer(str(gj), "b", "ogr"), tmp_path) == gj


def test_model_args_and_bundle_out(tmp_path):
    (tmp_path / "m").mkdir()
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"x")
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"x")
    assert inputs.model_args("folder", tmp_path / "m") == ["--model", str(tmp_path / "m")]
    assert inputs.model_args("checkpoint", ckpt) == ["--model", str(ckpt)]
    assert inputs.model_args("checkpoint", ckpt, encoder="resnet18")[-2:] == [
        "--encoder", "resnet18"]
    assert inputs.model_args("onnx", onnx) == ["--model", str(onnx), "--backend", "onnx"]
    with pytest.raises(InputError, match="expected a folder"):
        inputs.model_args("folder", ckpt)
    assert inputs.bundle_out(tmp_path, "austin") == tmp_path / "austin.segx"
    with pytest.raises(InputError, match="plain name"):
        inputs.bundle_out(tmp_path, "a/b")


# -- the worker process -----------------------------------------------------------------
def test_missing_python_is_explained(tmp_path):
    with pytest.raises(WorkerError, match="cannot start the worker Python.*Settings"):
        WorkerRun(str(tmp_path / "nope" / "python"), "check-env", []).run()


def test_python_without_torch_gives_explained_error(qgis_iface, tmp_path, tiny_run):
    if not Path(SYSTEM_PY).is_file():
        pytest.skip("needs a system Python without torch")
    plugin = segexplain_link(tmp_path)
    out = tmp_path / "out" / "x.segx"
    out.parent.mkdir()
    qgis_iface.messageBar().clear_messages()
    task = CoreTask("analyze (broken env)", "analyze",
                    ["--data", tiny_run.data / "train", "--model", tiny_run.model,
                     "--out", out], python=SYSTEM_PY, folder=plugin, out=out,
                    iface=qgis_iface)
    QgsApplication.taskManager().addTask(task)
    wait_task(task, 120)
    assert task.result is None
    assert "analyze needs" in task.message and "torch" in task.message
    assert SYSTEM_PY in task.message and "Settings" in task.message
    assert "Traceback" not in task.message and "\n" not in task.message
    assert task.message in " ".join(qgis_iface.messageBar().get_messages(Qgis.Critical))
    assert not list(out.parent.iterdir())


@pytest.mark.slow
def test_cancel_stops_worker_and_leaves_no_bundle(qgis_app, tmp_path, tiny_run):
    out = tmp_path / "cancelled.segx"
    task = CoreTask("analyze (to cancel)", "analyze",
                    ["--data", tiny_run.data / "train", "--model", tiny_run.model,
                     "--out", out, "--patch-size", "64", "--stride", "16",
                     "--backend", "torch"], python=VENV_PY, out=out, grace=10)
    partial_seen = []

    def on_event(event):
        if event.get("event") == "progress" and event.get("stage") == "infer" \
                and not partial_seen:
            partial_seen.extend(tmp_path.glob("cancelled.segx.partial-*"))
            task.cancel()

    task.workerEvent.connect(on_event)
    QgsApplication.taskManager().addTask(task)
    wait_task(task, 600)
    pid = task.worker.pid
    assert partial_seen, "the run ended before it could be cancelled mid-inference"
    assert task.was_cancelled and task.result is None
    assert pid is not None and not alive(pid)
    assert task.worker.proc.returncode is not None
    assert sorted(tmp_path.iterdir()) == []


# -- settings ---------------------------------------------------------------------------
@pytest.mark.slow
def test_settings_check_environment(plugin, tmp_path):
    dlg = plugin.runs.show_settings()
    dlg.python.setFilePath(VENV_PY)
    task = dlg.check()
    wait_task(task, 300)
    text = dlg.output.toPlainText()
    assert dlg.report is not None and dlg.report["ok"] is True
    assert "torch" in text and ("no GPU: CPU with onnxruntime" in text or "GPU:" in text)
    dlg.python.setFilePath(SYSTEM_PY)  # a checkout not named segexplain: no PYTHONPATH
    task = dlg.check()
    wait_task(task, 120)
    assert "cannot import segexplain" in dlg.output.toPlainText()


def test_worker_run_cancel_unit(tmp_path):
    """A cancelled WorkerRun raises CancelledError and leaves no process."""
    run = WorkerRun(VENV_PY, "check-env", [], grace=5)
    run.start()
    with pytest.raises(CancelledError):
        run.run(is_cancelled=lambda: True)
    assert run.proc.poll() is not None and not alive(run.pid)


def test_process_group_start_and_kill_windows_branch(tmp_path, monkeypatch):
    """The Windows branch: new process group, then `taskkill /PID PID /T /F` ends the tree.

    Here `taskkill` is a stand-in on PATH that ends the process group it is given, so
    the real child and grandchild must be gone afterwards, and the call is recorded.
    """
    assert process.group_kwargs(windows=True) == {
        "creationflags": process.CREATE_NEW_PROCESS_GROUP | process.CREATE_NO_WINDOW}
    assert process.group_kwargs(windows=False) == {"start_new_session": True}
    if process.WINDOWS:
        import subprocess as sp

        assert process.CREATE_NEW_PROCESS_GROUP == sp.CREATE_NEW_PROCESS_GROUP
        assert process.CREATE_NO_WINDOW == sp.CREATE_NO_WINDOW
    calls = tmp_path / "taskkill.calls"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "taskkill").write_text(textwrap.dedent(f"""\
        #!/bin/bash
        echo "$@" >> {calls}
        [ "$1" = /PID ] && [ "$3" = /T ] && [ "$4" = /F ] && kill -KILL -- -"$2"
        """))
    (bin_dir / "taskkill").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    import subprocess as sp

    proc = sp.Popen(["bash", "-c", "sleep 300 & echo $!; wait"], stdout=sp.PIPE, text=True,
                    **process.group_kwargs(windows=False))
    grandchild = int(proc.stdout.readline())
    process.kill_group(proc, windows=True)
    proc.wait(timeout=30)
    assert calls.read_text().split() == ["/PID", str(proc.pid), "/T", "/F"]
    for _ in range(50):
        if not alive(grandchild):
            break
        time.sleep(0.1)
    assert not alive(grandchild) and not alive(proc.pid)


def test_worker_that_ignores_sigterm_is_killed_with_its_children(tmp_path):
    """SIGTERM, then SIGKILL for the whole process group after the grace time."""
    out = tmp_path / "stubborn.segx"
    fake = tmp_path / "python"
    fake.write_text(textwrap.dedent(f"""\
        #!/bin/bash
        trap '' TERM
        mkdir -p {out}.partial-$$
        sleep 300 &
        echo "child $!" >&2
        echo '{{"event": "stage", "stage": "infer", "total": 1}}'
        wait
        """))
    fake.chmod(0o755)
    run = WorkerRun(str(fake), "analyze", [], out=out, grace=0.5)
    started = []
    with pytest.raises(CancelledError):
        run.run(lambda e: started.append(e), lambda: bool(started))
    assert started[0]["stage"] == "infer"
    child = int(next(ln for ln in run.stderr_tail if ln.startswith("child")).split()[1])
    assert run.proc.returncode == -9  # SIGTERM was ignored: killed
    for _ in range(50):
        if not alive(child):
            break
        time.sleep(0.1)
    assert not alive(child) and not alive(run.pid)
    assert sorted(tmp_path.iterdir()) == [fake]
