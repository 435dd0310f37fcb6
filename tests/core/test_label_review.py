"""Known label corruption, the label-review export, the region figures on a real run, the bench."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from segexplain.core.bundle.label_review import export_label_review, review_reason
from segexplain.core.bundle.reader import Bundle
from segexplain.core.cli import main
from segexplain.core.errors import ConfigurationError
from segexplain.core.sample.corrupt import corrupt_labels
from segexplain.core.sample.generate import write_sample_data

ROOT = Path(__file__).resolve().parents[2]


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_corrupt_labels_changes_exactly_the_listed_windows(tmp_path):
    data = tmp_path / "data"
    write_sample_data(data, small=True)
    out = tmp_path / "bad" / "train"
    windows = corrupt_labels(data / "train", out, patch_size=64, fraction=0.3, seed=4)
    assert windows and (out / "images").resolve() == (data / "train" / "images").resolve()
    listed = {(w["image"], w["row_off"], w["col_off"]) for w in windows}
    changed = set()
    for gt in sorted((data / "train" / "gt").glob("*.tif")):
        a, b = _read(gt), _read(out / "gt" / gt.name)
        assert set(np.unique(b)) <= {0, 255}
        for r in range(0, a.shape[0], 64):
            for c in range(0, a.shape[1], 64):
                if not np.array_equal(a[r:r + 64, c:c + 64], b[r:r + 64, c:c + 64]):
                    changed.add((gt.stem, r, c))
    assert changed == listed
    doc = json.loads((out / "corruption.json").read_text())
    assert doc["dropped"] > 0 and doc["added"] > 0 and doc["buildings"] > doc["dropped"]
    assert corrupt_labels(data / "train", out, patch_size=64, fraction=0.3, seed=4) == windows
    with pytest.raises(ConfigurationError, match="fraction"):
        corrupt_labels(data / "train", out, fraction=0.0)


def test_review_reason_names_the_larger_disagreement():
    r = review_reason(np.array([0.02, 0.0, np.nan]), np.array([0.01, 0.03, 0.01]))
    assert list(r) == ["missing building?", "label without building?",
                       "label without building?"]


def test_label_review_export_ranks_patches(tiny_run, tmp_path):
    from osgeo import ogr

    out = tmp_path / "review.gpkg"
    assert main(["export-tasks", str(tiny_run.bundle), "--kind", "label-review", "--out",
                 str(out), "--min-label-error", "0", "--progress", "none"]) == 0
    b = Bundle(tiny_run.bundle)
    score = np.asarray(b.patches["label_error"], np.float64)
    ds = ogr.Open(str(out))
    feats = list(ds.GetLayerByName("label_review"))
    got = [f.GetField("label_error") for f in feats]
    assert len(feats) == np.isfinite(score).sum() and feats[0].GetGeometryRef() is not None
    assert got == sorted(got, reverse=True)
    assert [f.GetField("rank") for f in feats] == list(range(1, len(feats) + 1))
    ds = None
    top = export_label_review(tiny_run.bundle, tmp_path / "top.geojson", "geojson",
                              min_score=0.0, top=3)
    assert top["patches"] == 3
    doc = json.loads((tmp_path / "top.geojson").read_text())
    assert [f["properties"]["rank"] for f in doc["features"]] == [1, 2, 3]


def test_real_run_bundles_report_region_figures(tiny_run, capsys):
    m = Bundle(tiny_run.bundle).manifest
    loo = m["baselines"]
    assert loo["unit"] == "region" and len(loo["rows"]) == 5
    assert set(loo["mae"]) == set(loo["methods"])
    r = Bundle(tiny_run.estimate).manifest["region_estimate"]
    assert r["real_iou"] is not None and 0 <= r["covered_share"] <= 1
    assert main(["info", str(tiny_run.bundle)]) == 0
    text = capsys.readouterr().out
    assert "leave-one-region-out" in text and "MAE" in text
    assert main(["info", str(tiny_run.estimate)]) == 0
    text = capsys.readouterr().out
    assert "region IoU estimate" in text and "out of coverage" in text


@pytest.mark.slow
def test_validity_bench_quick_prints_every_figure(tiny_run, tmp_path):
    cmd = [sys.executable, str(ROOT / "bench" / "validity.py"), "--quick", "--data",
           str(tiny_run.data), "--model", str(tiny_run.model), "--work", str(tmp_path)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    doc = json.loads(p.stdout.strip().splitlines()[-1])
    assert doc["bench"] == "validity" and doc["seeds"] == [0]
    run = doc["runs"][0]
    assert len(run["region_table"]) == 5
    assert set(run["region_mae"]) == {"mean_confidence", "atc", "mlp2d", "full", "gated"}
    assert run["corrupted_patches"] > 0 and 0.0 <= run["label_error_auroc"] <= 1.0
    assert 0.0 <= run["novelty_auroc"] <= 1.0 and run["patch"]["n"] > 0
    assert set(doc["goals"]) >= {"region_mae_le_3_points", "patch_spearman_ge_0.8",
                                 "failure_auroc_ge_0.9", "novelty_auroc_ge_0.95",
                                 "label_error_auroc_ge_0.9"}
    assert doc["spread"]["novelty_auroc"]["values"] == [round(run["novelty_auroc"], 4)]
