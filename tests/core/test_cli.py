"""The analytics commands on the shared small real run (`tiny_run`: sample data, a tiny
trained U-Net, its analysis bundle at 64 px patches and the estimate of the held-out
region), plus runs of their own where a test needs to change or kill something.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from segexplain.core.bundle.reader import Bundle
from segexplain.core.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_run):
    """(folder with data/ and model/, analysis bundle, estimate bundle); read-only."""
    return tiny_run.data.parent, tiny_run.bundle, tiny_run.estimate


def test_analyze_bundle(run):
    where, ref, _ = run
    b = Bundle(ref)
    m = b.manifest
    assert m["kind"] == "analysis" and m["patch_size"] == 64 and m["stride"] == 64
    assert len(b) == 10 * 16  # 5 regions x 2 tiles of 256 px, 16 patches each
    assert set(m["estimators"]) == {"mlp2d", "full", "latent"}
    assert all(e["grouping"] == "image" for e in m["estimators"].values())
    assert m["stats"]["overall"]["overall_iou"] is not None
    assert set(m["stats"]["by_split"]) == {"train", "val"}
    for im in m["images"]:
        assert (ref / im["prediction"]).is_file() and (ref / im["confusion"]).is_file()
    assert not list(where.glob("*.partial-*"))
    assert np.isfinite(b.patches["est_iou"]).all()


def test_estimate_bundle(run):
    import rasterio

    where, _, new = run
    b = Bundle(new)
    m = b.manifest
    assert m["kind"] == "estimate" and len(b) == 32
    assert set(b.patches["split"]) == {"new"}
    assert np.isfinite(b.patches["novelty"]).all() and np.isfinite(b.patches["iou"]).any()
    assert "full" in m["estimate_scores"] and m["novelty"]["auroc_vs_reference_val"] >= 0
    im = m["images"][0]
    with rasterio.open(new / im["est_iou"]) as est, rasterio.open(im["path"]) as src:
        assert est.crs == src.crs and est.bounds == src.bounds
        assert est.dtypes[0] == "float32" and est.shape == (4, 4)
        values = est.read(1)
    rows = b.patches["image"] == im["name"]
    first = np.flatnonzero(rows & (b.patches["row_off"] == 0) & (b.patches["col_off"] == 0))[0]
    assert values[0, 0] == pytest.approx(b.patches["est_iou"][first])


def test_info_json_without_torch_or_sklearn(run):
    _, ref, new = run
    code = ("import sys, json; from segexplain.core.cli import main; rc = main(['info', "
            f"{str(new)!r}, '--json']); heavy = [m for m in ('torch', 'sklearn', 'rasterio') "
            "if m in sys.modules]; sys.stderr.write(json.dumps(heavy)); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stderr.strip().splitlines()[-1]) == []
    s = json.loads(p.stdout)
    assert s["kind"] == "estimate" and s["n_patches"] == 32 and "full" in s["estimate_scores"]
    p = subprocess.run([sys.executable, "-m", "segexplain.core.cli", "info", str(ref)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "estimator full: cross-validated MAE" in p.stdout


def test_export_tasks(run, tmp_path):
    from osgeo import ogr

    _, _, new = run
    for name, fmt in (("tasks.gpkg", "GPKG"), ("tasks.geojson", "GeoJSON")):
        out = tmp_path / name
        assert main(["export-tasks", str(new), "--out", str(out), "--progress", "none"]) == 0
        ds = ogr.Open(str(out))
        assert ds.GetDriver().GetName() == fmt
        lyr = ds.GetLayer(0)
        assert lyr.GetFeatureCount() == 32
        tasks = {f.GetField("task") for f in lyr}
        assert tasks <= {"map", "skip", "check"} and tasks
        if fmt == "GeoJSON":  # RFC 7946: longitude / latitude
            lyr.ResetReading()
            feat = lyr.GetNextFeature()  # keep the feature alive while using its geometry
            x, y = feat.GetGeometryRef().Centroid().GetPoint_2D()
            assert -180 <= x <= 180 and -90 <= y <= 90


def test_errors_are_one_line_and_nonzero(run, tmp_path, capsys):
    where, ref, _ = run
    rc = main(["analyze", "--data", str(tmp_path / "nope"), "--model", str(where / "model"),
               "--out", str(tmp_path / "x.segx"), "--progress", "none"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nope" in err[0]
    assert not (tmp_path / "x.segx").exists()
    rc = main(["estimate", "--data", str(where / "data" / "new"), "--reference",
               str(tmp_path / "missing.segx"), "--model", str(where / "model"),
               "--out", str(tmp_path / "y.segx"), "--progress", "jsonl"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 2 and last["event"] == "error" and last["error"] == "BundleError"


def test_jsonl_progress(run, capsys):
    _, ref, _ = run
    assert main(["info", str(ref), "--progress", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert lines[-1]["event"] == "done" and lines[-1]["result"]["kind"] == "analysis"


def test_truncated_bundle_refused_by_info(run, tmp_path, capsys):
    import shutil

    _, ref, _ = run
    copy = tmp_path / "copy.segx"
    shutil.copytree(ref, copy)
    (copy / "patches.gpkg").unlink()
    assert main(["info", str(copy)]) == 2
    assert "missing" in capsys.readouterr().err


def test_estimate_refuses_other_model(run, tmp_path, capsys):
    from segexplain.core.model.models import LoadedModel, build_model, save_model

    where, ref, _ = run
    other = LoadedModel(build_model("unet", "resnet18", 3, 1), "unet", "resnet18", 3, 1)
    save_model(other, tmp_path / "other")
    rc = main(["estimate", "--data", str(where / "data" / "new"), "--reference", str(ref),
               "--model", str(tmp_path / "other"), "--out", str(tmp_path / "z.segx")])
    assert rc == 2 and "not the model of reference" in capsys.readouterr().err


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_killed_run_never_looks_complete(run, tmp_path, sig):
    import signal

    where, _, _ = run
    out = tmp_path / "killed.segx"
    cmd = [sys.executable, "-m", "segexplain.core.cli", "analyze", "--data",
           str(where / "data" / "train"), "--model", str(where / "model"), "--out", str(out),
           "--patch-size", "64", "--progress", "jsonl"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # wait until the bundle is being written
        if '"stage": "infer"' in line and list(tmp_path.glob("killed.segx.partial-*")):
            break
    proc.send_signal(getattr(signal, sig))
    rc = proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    assert not out.exists()
    partial = list(tmp_path.glob("killed.segx.partial-*"))
    if sig == "SIGTERM":  # cancelled cleanly: exit 130, partial folder removed
        assert rc == 130 and partial == []
    else:
        assert rc == -9 and len(partial) == 1
        from segexplain.core.errors import BundleError

        with pytest.raises(BundleError):
            Bundle(partial[0])
        # the next run of the same output clears the dead run's leftovers
        from segexplain.core.bundle.writer import BundleWriter

        with BundleWriter(out) as writer:
            assert writer.partial.is_dir()
            assert list(tmp_path.glob("killed.segx.partial-*")) == [writer.partial]
        assert list(tmp_path.glob("killed.segx.partial-*")) == []


def test_analyze_a_checkpoint_with_its_architecture(tiny_run, tmp_path):
    import torch
    from segexplain.core.model.models import build_model

    ckpt = tmp_path / "unet-resnet18.pt"
    torch.save(build_model("unet", "resnet18", 3, 1).state_dict(), ckpt)
    args = ["analyze", "--data", str(tiny_run.data / "train"), "--model", str(ckpt),
            "--patch-size", "64", "--progress", "none"]
    # without the architecture the default (resnet34) does not fit: explained, exit 2
    assert main([*args, "--out", str(tmp_path / "wrong.segx")]) == 2
    assert main([*args, "--arch", "unet", "--encoder", "resnet18",
                 "--out", str(tmp_path / "ckpt.segx")]) == 0
    assert Bundle(tmp_path / "ckpt.segx").manifest["n_patches"] > 0


def test_an_onnx_file_that_is_no_model_is_refused_with_what_to_do(tiny_run, tmp_path,
                                                                   capsys):
    onnx = tmp_path / "model.onnx"  # ONNX files are models (test_onnx_model.py): not this
    onnx.write_bytes(b"not an ONNX model")
    rc = main(["analyze", "--data", str(tiny_run.data / "train"), "--model", str(onnx),
               "--out", str(tmp_path / "x.segx"), "--progress", "none"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model.onnx" in err and "segexplain export-onnx" in err
    assert not (tmp_path / "x.segx").exists()
