import numpy as np
import pytest
from segexplain.core.analytics.apply import estimate_table
from segexplain.core.analytics.confidence import with_derived
from segexplain.core.analytics.estimators import MLPIoUEstimator, build_features
from segexplain.core.analytics.fit import analyze_table
from segexplain.core.bundle.manifest import write_analysis, write_estimate
from segexplain.core.bundle.reader import Bundle
from segexplain.core.bundle.writer import BundleWriter
from segexplain.core.errors import BundleError, ConfigurationError
from segexplain.core.sample.synthetic import synthetic_table


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    table = synthetic_table(n_images=12, grid=4, dim=24, seed=0)
    res = analyze_table(table, clusters_max=8, heatmap_shape=(24, 24))
    path = tmp_path_factory.mktemp("ref") / "ref.segx"
    with BundleWriter(path) as w:
        w.finish(write_analysis(w, res, {"patch_size": 64, "stride": 64}))
    return res, Bundle(path)


def test_estimators_validated_and_learn(reference):
    res, _ = reference
    for name in ("mlp2d", "full", "latent"):
        cv = res.validation[name]
        assert cv.grouping == "image" and cv.folds == 5
        assert cv.scores["spearman"] > 0.5, (name, cv.scores)
    # est_iou of labelled patches is the out-of-fold estimate, not the training fit
    np.testing.assert_array_equal(res.est_iou, res.validation["full"].oof)


def test_heatmap_is_the_2d_mlp_on_the_grid(reference):
    res, b = reference
    grid, extent = b.heatmap()
    assert grid.shape == (24, 24) and np.isfinite(grid).all()
    assert 0 <= grid.min() and grid.max() <= 1
    pts = res.latent[:, :2]
    assert extent[0] < pts[:, 0].min() and extent[1] > pts[:, 0].max()
    est = res.estimators["mlp2d"]
    cx = extent[0] + (extent[1] - extent[0]) * 0.5 / 24
    cy = extent[2] + (extent[3] - extent[2]) * 0.5 / 24
    assert grid[0, 0] == pytest.approx(est.predict(np.array([[cx, cy]]))[0], abs=1e-5)


def test_novelty_reference_is_train_split(reference):
    res, b = reference
    split = res.table.columns["split"]
    np.testing.assert_array_equal(b.array("novelty_reference_ids"),
                                  np.flatnonzero(split == "train"))
    assert b.manifest["novelty"]["calibration"] == "leave-one-image-out"
    # reference patches are calibrated against themselves: about uniform percentiles
    assert 35 < np.nanmean(res.novelty_pct[split == "train"]) < 65


def test_estimate_uses_stored_arrays_only(reference, tmp_path):
    res, b = reference
    new = synthetic_table(n_images=3, grid=4, dim=24, seed=7, split="new",
                          regions=("informal",), region_shift=5.0)
    est = estimate_table(new, b)
    assert est.estimator == "full"
    # same numbers as the in-memory estimator: the bundle's arrays are enough
    latent = res.pca.transform(new.embeddings)
    x = build_features(latent, with_derived(new.columns), res.features["full"])
    np.testing.assert_allclose(est.est_iou, res.estimators["full"].predict(x), atol=1e-5)
    again = MLPIoUEstimator.from_arrays({a: b.array(a) for a in
                                         b.manifest["estimators"]["full"]["arrays"]}, "full")
    np.testing.assert_allclose(again.predict(x), est.est_iou, atol=1e-6)
    # a shifted region is novel, and separable from the reference's val patches
    assert np.nanmean(est.novelty_pct) > 90
    assert est.novelty_auroc > 0.9
    assert set(est.scores) == {"full", "mlp2d", "latent"}
    with BundleWriter(tmp_path / "new.segx") as w:
        w.finish(write_estimate(w, est, b, {"patch_size": 64, "stride": 64}))
    nb = Bundle(tmp_path / "new.segx")
    assert nb.kind == "estimate" and len(nb) == 48
    assert nb.manifest["novelty"]["auroc_vs_reference_val"] == pytest.approx(est.novelty_auroc)
    assert nb.manifest["estimate_scores"]["full"]["n"] == 48
    assert nb.raster("informal1", "est_iou").is_file()
    np.testing.assert_allclose(nb.patches["est_iou"], est.est_iou, rtol=1e-6)
    with pytest.raises(BundleError, match="analysis bundle"):
        estimate_table(new, nb)


def test_encoder_only_uses_latent_estimator(reference):
    _, b = reference
    new = synthetic_table(n_images=2, grid=2, dim=24, seed=8, split="new",
                          with_uncertainty=False)
    new.columns["pred_frac"][:] = np.nan
    new.columns["iou"][:] = np.nan
    est = estimate_table(new, b)
    assert est.estimator == "latent" and np.isfinite(est.est_iou).all()
    assert est.scores == {}


def test_wrong_embedding_size(reference):
    _, b = reference
    with pytest.raises(ConfigurationError, match="24"):
        estimate_table(synthetic_table(n_images=1, grid=2, dim=8, split="new"), b)


def test_small_or_unlabelled_runs_skip_estimators():
    t = synthetic_table(n_images=1, grid=2, dim=8)
    res = analyze_table(t, clusters_max=3)
    assert res.estimators == {} and res.est_iou is None and res.notes
    assert res.clustering is not None and res.novelty is not None


def test_estimate_runs_without_sklearn_or_torch(reference):
    import json
    import subprocess
    import sys

    _, b = reference
    code = (
        "import sys, json\n"
        "sys.modules['sklearn'] = None; sys.modules['torch'] = None  # any import fails\n"
        "from segexplain.core.analytics.apply import estimate_table\n"
        "from segexplain.core.bundle.reader import Bundle\n"
        "from segexplain.core.sample.synthetic import synthetic_table\n"
        "t = synthetic_table(n_images=2, grid=2, dim=24, seed=9, split='new')\n"
        f"e = estimate_table(t, Bundle({str(b.path)!r}))\n"
        "print(json.dumps([e.est_iou.tolist(), e.novelty_pct.tolist()]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    est_iou, novelty = json.loads(p.stdout)
    here = estimate_table(synthetic_table(n_images=2, grid=2, dim=24, seed=9, split="new"), b)
    np.testing.assert_allclose(est_iou, here.est_iou, rtol=1e-6)
    np.testing.assert_allclose(novelty, here.novelty_pct, rtol=1e-6)
