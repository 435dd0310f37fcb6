import json

import numpy as np
import pytest
from segexplain.core.analytics.fit import analyze_table
from segexplain.core.bundle.manifest import write_analysis
from segexplain.core.bundle.tasks import assign_tasks, export_tasks
from segexplain.core.bundle.writer import BundleWriter
from segexplain.core.errors import ConfigurationError
from segexplain.core.sample.synthetic import synthetic_table


def test_assign_tasks_rules():
    pred = np.array([0.3, 0.0, 0.0, 0.3, 0.0, np.nan])
    nov = np.array([10.0, 10.0, 10.0, 99.0, 99.0, 10.0])
    unc = np.array([0.0, 0.0, 0.2, 0.0, 0.0, np.nan])
    assert list(assign_tasks(pred, nov, unc)) == ["map", "skip", "check", "check", "check",
                                                  "check"]
    assert assign_tasks(pred, nov, unc, novelty_check=100.0)[3] == "map"


def test_export_tasks_geojson_and_gpkg(tmp_path):
    from osgeo import ogr

    t = synthetic_table(n_images=6, grid=2, dim=8)
    t.columns["pred_frac"][:5] = 0.0
    with BundleWriter(tmp_path / "b.segx") as w:
        w.finish(write_analysis(w, analyze_table(t, clusters_max=3), {"stride": 64}))
    res = export_tasks(tmp_path / "b.segx", tmp_path / "t.gpkg")
    assert res["patches"] == 24 and sum(res["tasks"].values()) == 24
    ds = ogr.Open(str(tmp_path / "t.gpkg"))
    lyr = ds.GetLayerByName("tasks")
    feats = list(lyr)
    assert len(feats) == 24 and feats[0].GetGeometryRef() is not None
    assert {f.GetField("task") for f in feats} <= {"map", "skip", "check"}
    ds = None
    export_tasks(tmp_path / "b.segx", tmp_path / "t.geojson", "geojson")
    doc = json.loads((tmp_path / "t.geojson").read_text())
    assert len(doc["features"]) == 24
    lon, lat = doc["features"][0]["geometry"]["coordinates"][0][0][:2]
    assert 12 < lon < 15 and 48 < lat < 49.5  # UTM 33N sample origin, in WGS 84
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ConfigurationError):
        export_tasks(tmp_path / "b.segx", tmp_path / "t.shp", "shp")
