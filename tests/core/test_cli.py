"""The analytics commands on a small real run: sample data, a tiny trained U-Net.

The module fixture builds its own run (64 px patches, so that the small sample data
gives enough patches for cross-validation) with the library's training function.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from segexplain.core.bundle_reader import Bundle
from segexplain.core.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from segexplain.core.datasets import discover
    from segexplain.core.models import save_model
    from segexplain.core.sample_data import write_sample_data
    from segexplain.core.training import preset, train

    where = tmp_path_factory.mktemp("cli")
    write_sample_data(where / "data", small=True)
    pairs = discover(where / "data" / "train")
    model, _ = train([p for p in pairs if p.split == "train"],
                     [p for p in pairs if p.split == "val"], preset("tiny", threads=1))
    save_model(model, where / "model")
    ref = where / "ref.segx"
    assert main(["analyze", "--data", str(where / "data" / "train"), "--model",
                 str(where / "model"), "--out", str(ref), "--patch-size", "64",
                 "--clusters-max", "6", "--progress", "none"]) == 0
    new = where / "new.segx"
    assert main(["estimate", "--data", str(where / "data" / "new"), "--reference", str(ref),
                 "--model", str(where / "model"), "--out", str(new),
                 "--progress", "none"]) == 0
    return where, ref, new


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
    from segexplain.core.models import LoadedModel, build_model, save_model

    where, ref, _ = run
    other = LoadedModel(build_model("unet", "resnet18", 3, 1), "unet", "resnet18", 3, 1)
    save_model(other, tmp_path / "other")
    rc = main(["estimate", "--data", str(where / "data" / "new"), "--reference", str(ref),
               "--model", str(tmp_path / "other"), "--out", str(tmp_path / "z.segx")])
    assert rc == 2 and "not the model of reference" in capsys.readouterr().err
