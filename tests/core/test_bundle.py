import json
import os
import sqlite3

import numpy as np
import pytest
from segexplain.core.analytics.fit import analyze_table
from segexplain.core.bundle.manifest import write_analysis
from segexplain.core.bundle.reader import Bundle, primary_key, read_manifest, read_table
from segexplain.core.bundle.writer import BundleWriter, est_iou_raster, write_float_raster
from segexplain.core.errors import BundleError, ConfigurationError, IncompleteBundleError
from segexplain.core.sample.synthetic import synthetic_table


@pytest.fixture(scope="module")
def analysis():
    table = synthetic_table(n_images=8, grid=3, dim=16, seed=3)
    return analyze_table(table, clusters_max=5, heatmap_shape=(16, 20))


@pytest.fixture()
def bundle(tmp_path, analysis):
    with BundleWriter(tmp_path / "run.segx") as w:
        manifest = write_analysis(w, analysis, {"patch_size": 64, "stride": 64})
        path = w.finish(manifest)
    return path


def test_round_trip(bundle, analysis):
    t = analysis.table
    b = Bundle(bundle)
    assert b.kind == "analysis" and len(b) == len(t) == 72
    p = b.patches
    np.testing.assert_array_equal(p["patch_id"], np.arange(72))
    assert list(p["image"]) == list(t.columns["image"])
    np.testing.assert_array_equal(p["row_off"], t.columns["row_off"])
    np.testing.assert_allclose(p["iou"], t.columns["iou"])
    np.testing.assert_allclose(p["pc1"], analysis.latent[:, 0], rtol=1e-6)
    np.testing.assert_allclose(p["est_iou"], analysis.est_iou, rtol=1e-6)
    np.testing.assert_allclose(p["novelty"], analysis.novelty_pct, rtol=1e-6)
    np.testing.assert_array_equal(p["cluster"], analysis.clustering.labels_)
    emb = b.array("embeddings")
    assert emb.dtype == np.float16
    np.testing.assert_allclose(emb, t.embeddings, rtol=1e-2, atol=1e-2)
    np.testing.assert_array_equal(b.array("pca_components"), analysis.pca.components_)
    grid, extent = b.heatmap()
    assert grid.shape == (16, 20) and extent == pytest.approx(analysis.heatmap_extent)
    np.testing.assert_array_equal(b.array("thumbs_label"), t.thumbnails["label"])
    cl = b.clusters()
    assert cl["size"].sum() == 72
    assert json.loads(cl["representatives"][0])[0] in range(72)
    m = b.manifest
    assert m["schema_version"] == 1 and m["complete"] is True
    assert set(m["estimators"]) == {"mlp2d", "full", "latent"}
    for name, e in m["estimators"].items():
        assert e["folds"] == 5 and e["grouping"] == "image" and np.isfinite(e["spearman"])
        assert all(b.has_array(a) for a in e["arrays"]), name
    assert b.has_array("scaler2d_mean")
    assert m["stats"]["overall"]["patches"] == 72


def test_geometries_and_metadata_in_gpkg(bundle, analysis):
    from osgeo import ogr

    ds = ogr.Open(str(bundle / "patches.gpkg"))
    lyr = ds.GetLayerByName("patches")
    assert lyr.GetFeatureCount() == 72
    assert lyr.GetSpatialRef().GetAuthorityCode(None) == "32633"
    f = lyr.GetNextFeature()
    g = f.GetGeometryRef()
    assert g.GetGeometryName() == "POLYGON"
    assert g.GetArea() == pytest.approx(analysis.table.footprints[f.GetField("patch_id")].area)
    con = sqlite3.connect(bundle / "patches.gpkg")
    rows = dict(con.execute("select key, value from run_metadata").fetchall())
    con.close()
    assert json.loads(rows["iou_convention"]) == "zero"
    assert "mlp2d" in json.loads(rows["estimators"])


def test_gpkg_reads_through_one_reader(bundle, tmp_path):
    gpkg = bundle / "patches.gpkg"
    pk = primary_key(bundle)  # the bundle, its GeoPackage or a .gpkg path all work
    assert pk == primary_key(gpkg) == "fid"
    cols = read_table(gpkg, "patches", [pk, "patch_id"])
    assert cols["patch_id"].tolist() == list(range(72))
    assert len(set(cols[pk].tolist())) == 72 and cols[pk].dtype == np.int64
    with pytest.raises(BundleError, match="no column"):
        read_table(bundle, "patches", ["patch_id", "nope"])
    some = read_table(bundle, "patches", ["patch_id", "nope", "iou"], missing_ok=True)
    assert list(some) == ["patch_id", "iou"]
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BundleError, match="not a readable GeoPackage"):
        read_table(junk, "patches")


def test_files_hashed_no_pickle(bundle):
    m = read_manifest(bundle)
    import hashlib

    for name, digest in m["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest
    for f in (bundle / "arrays").glob("*.npy"):
        np.load(f, allow_pickle=False)  # raises on object arrays
    assert not list(bundle.rglob("*.pkl")) and not list(bundle.rglob("*.pickle"))


def test_truncated_bundles_are_refused(bundle):
    victim = sorted((bundle / "arrays").glob("*.npy"))[0]
    victim.unlink()
    with pytest.raises(IncompleteBundleError, match="missing"):
        Bundle(bundle)


def test_truncated_manifest_is_refused(bundle):
    mf = bundle / "manifest.json"
    mf.write_bytes(mf.read_bytes()[: len(mf.read_bytes()) // 2])
    with pytest.raises(IncompleteBundleError, match="unreadable manifest"):
        Bundle(bundle)
    mf.unlink()
    with pytest.raises(IncompleteBundleError, match="never finished"):
        Bundle(bundle)


def test_failed_write_leaves_nothing_and_keeps_old(tmp_path, analysis, bundle):
    out = tmp_path / "run.segx"
    before = (out / "manifest.json").read_text()
    with pytest.raises(RuntimeError), BundleWriter(out) as w:
        w.write_array("latent", analysis.latent)
        assert w.partial.name == f"run.segx.partial-{os.getpid()}"
        assert w.partial.exists()
        raise RuntimeError("killed")
    assert not list(tmp_path.glob("*.partial-*"))
    assert (out / "manifest.json").read_text() == before


def test_partial_folder_never_opens(tmp_path, analysis):
    w = BundleWriter(tmp_path / "x.segx").__enter__()
    w.write_array("latent", analysis.latent)
    with pytest.raises(BundleError):
        Bundle(w.partial)
    w.__exit__(None, None, None)


def test_writer_refuses_objects_and_bad_names(tmp_path):
    with pytest.raises(ConfigurationError, match=".segx"):
        BundleWriter(tmp_path / "x.gpkg")
    with BundleWriter(tmp_path / "y.segx") as w, pytest.raises(ConfigurationError):
        w.write_array("bad", np.array(["a", None], dtype=object))


def test_est_iou_raster_is_aligned(tmp_path, analysis):
    import rasterio

    t = analysis.table
    im = t.images[0]
    values = np.arange(len(t), dtype=np.float32) / len(t)
    grid, transform = est_iou_raster(im, t.columns, values, 64)
    assert grid.shape == (3, 3)
    rows = np.flatnonzero(t.columns["image"] == im.name)
    r = int(t.columns["row_off"][rows[4]]) // 64
    c = int(t.columns["col_off"][rows[4]]) // 64
    assert grid[r, c] == pytest.approx(values[rows[4]])
    path = tmp_path / "e.tif"
    write_float_raster(path, grid, transform, im.crs_wkt)
    with rasterio.open(path) as src:
        assert src.dtypes[0] == "float32"
        assert src.transform.c == im.transform[2] and src.transform.f == im.transform[5]
        assert src.transform.a == pytest.approx(im.transform[0] * 64)
        # the cell of a patch covers exactly its footprint
        fp = t.footprints[rows[4]]
        x, y = fp.centroid.x, fp.centroid.y
        assert next(src.sample([(x, y)]))[0] == pytest.approx(values[rows[4]])


def test_bulk_patches_layer_reads_back_through_ogr(bundle, analysis):
    """The sqlite3-written layer is a valid GeoPackage layer: OGR reads fids 1..N in
    patch_id order, the footprints, the feature count and an R-tree spatial index."""
    from osgeo import ogr

    t = analysis.table
    ds = ogr.Open(str(bundle / "patches.gpkg"))
    lyr = ds.GetLayerByName("patches")
    assert lyr.GetFeatureCount(force=0) == 72           # gpkg_ogr_contents, not a scan
    assert lyr.GetFIDColumn() == "fid"
    sql = ds.ExecuteSQL("SELECT HasSpatialIndex('patches', 'geom')")
    assert sql.GetNextFeature().GetField(0) == 1
    ds.ReleaseResultSet(sql)
    xmin, xmax, ymin, ymax = lyr.GetExtent(force=0)
    xs = [fp.bounds for fp in t.footprints]
    assert xmin == pytest.approx(min(b[0] for b in xs))
    assert ymax == pytest.approx(max(b[3] for b in xs))
    for i, f in enumerate(lyr):
        assert f.GetFID() == i + 1 and f.GetField("patch_id") == i
        g = f.GetGeometryRef()
        assert g.GetEnvelope() == pytest.approx(
            (t.footprints[i].bounds[0], t.footprints[i].bounds[2],
             t.footprints[i].bounds[1], t.footprints[i].bounds[3]))
        assert g.GetArea() == pytest.approx(t.footprints[i].area)
    # a spatial filter goes through the R-tree
    fp = t.footprints[5]
    lyr.SetSpatialFilterRect(*fp.centroid.coords[0], *fp.centroid.coords[0])
    assert 5 in {f.GetField("patch_id") for f in lyr}


def test_columns_arrays_equal_the_geopackage(bundle):
    from segexplain.core.bundle.reader import column_names, read_columns
    from segexplain.core.bundle.writer import PATCH_FIELDS

    names = column_names(bundle)
    assert "patch_id" in names and "image" in names and "novelty" in names
    from_gpkg = read_table(bundle, "patches", names, arrays=False)
    from_npy = read_columns(bundle, names)
    for name in names:
        a, b = from_gpkg[name], from_npy[name]
        if PATCH_FIELDS[name] == "text":
            assert a.tolist() == b.tolist(), name
        else:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert set(names) <= set(PATCH_FIELDS)
    assert all(name in read_manifest(bundle)["files"] for name in
               ("columns/patch_id.npy", "columns/image.codes.npy", "columns/image.labels.npy"))


def test_columns_text_nulls_and_int_nans(tmp_path):
    from segexplain.core.bundle.reader import read_columns
    from segexplain.core.bundle.writer import write_columns

    write_columns(tmp_path / "columns", {"t": "text", "i": "int", "j": "int", "r": "real"},
                  {"t": np.array(["b", None, "a", "b"], dtype=object),
                   "i": np.array([1.0, np.nan, 3.0, 4.0]), "j": np.array([1.0, 2.0, 3.0, 4.0]),
                   "r": np.array([0.5, np.nan, 1.0, 2.0], np.float32)})
    out = read_columns(tmp_path, ["t", "i", "j", "r"])
    assert out["t"].tolist() == ["b", None, "a", "b"]
    np.testing.assert_array_equal(out["i"], [1.0, np.nan, 3.0, 4.0])
    assert out["j"].dtype == np.int64 and out["j"].tolist() == [1, 2, 3, 4]
    np.testing.assert_array_equal(out["r"], [0.5, np.nan, 1.0, 2.0])


def test_est_iou_raster_overlapping_windows_average_per_cell():
    """Vectorised gridding equals a per-patch loop, with overlapping and clipped windows."""
    import math
    from types import SimpleNamespace

    from segexplain.core.bundle.writer import rows_by_image

    rng = np.random.default_rng(0)
    n = 300
    cols = {"image": np.where(rng.random(n) < 0.5, "a", "b"),
            "row_off": rng.integers(0, 900, n), "col_off": rng.integers(0, 700, n),
            "height": rng.integers(1, 300, n), "width": rng.integers(1, 300, n)}
    vals = rng.random(n)
    vals[::7] = np.nan
    im = SimpleNamespace(name="a", height=1000, width=800, transform=(1, 0, 0, 0, -1, 0))
    for cell in (64, 100, 256):
        total = np.zeros((math.ceil(1000 / cell), math.ceil(800 / cell)))
        count = np.zeros_like(total)
        for i in np.flatnonzero((cols["image"] == "a") & np.isfinite(vals)):
            r0, c0 = cols["row_off"][i], cols["col_off"][i]
            sl = (slice(r0 // cell, math.ceil((r0 + cols["height"][i]) / cell)),
                  slice(c0 // cell, math.ceil((c0 + cols["width"][i]) / cell)))
            total[sl] += vals[i]
            count[sl] += 1
        want = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        got, _ = est_iou_raster(im, cols, vals, cell, rows_by_image(cols)["a"])
        np.testing.assert_allclose(got, want, rtol=1e-6)
