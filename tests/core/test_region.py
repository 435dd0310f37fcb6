"""Region-level IoU: the methods, leave-one-region-out, the interval, the bundle entries."""

from __future__ import annotations

import numpy as np
import pytest
from segexplain.core.analytics.apply import estimate_table
from segexplain.core.analytics.baselines import leave_one_region_out
from segexplain.core.analytics.confidence import (
    CONFIDENCE_FEATURES,
    derived_columns,
    has_confidence,
    with_derived,
)
from segexplain.core.analytics.fit import analyze_table
from segexplain.core.analytics.latent import LatentPCA
from segexplain.core.analytics.region import (
    COVERAGE_PERCENTILE,
    METHODS,
    RegionModel,
    atc_iou,
    covered,
    expected_union,
    fit_atc,
    fit_atc_threshold,
    fit_estimators,
    interval,
    mean_confidence_iou,
    overall_iou_from_errors,
    real_overall_iou,
    take,
    valid_pixels,
    weighted_iou,
)
from segexplain.core.bundle.manifest import write_analysis, write_estimate
from segexplain.core.bundle.reader import Bundle
from segexplain.core.bundle.writer import BundleWriter
from segexplain.core.engine.metrics import HIST_BINS, logit_histogram
from segexplain.core.sample.synthetic import synthetic_table

REGIONS = ("metro", "suburb", "farmland", "alpine")


@pytest.fixture(scope="module")
def table():
    return synthetic_table(n_images=16, grid=4, dim=24, seed=1, regions=REGIONS)


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory):
    res = analyze_table(table, clusters_max=6, heatmap_shape=(16, 16))
    path = tmp_path_factory.mktemp("ref") / "ref.segx"
    with BundleWriter(path) as w:
        w.finish(write_analysis(w, res, {"patch_size": 64, "stride": 64}))
    return res, Bundle(path)


def test_overall_iou_from_real_errors_is_the_real_overall_iou(table):
    c = table.columns
    rows = np.arange(len(table))
    pred = c["tp"] + c["fp"]
    assert overall_iou_from_errors(pred, c["fp"], c["fn"]) == pytest.approx(
        real_overall_iou(c, rows))
    assert real_overall_iou(c, rows) == pytest.approx(
        c["tp"].sum() / (c["tp"] + c["fp"] + c["fn"]).sum())
    np.testing.assert_allclose(valid_pixels(c), 64 * 64)
    assert overall_iou_from_errors(np.zeros(2), np.zeros(2), np.zeros(2)) is None


def test_mean_confidence_reads_probabilities_as_calibrated(table):
    c = dict(table.columns)
    v = valid_pixels(c)
    c["soft_fp_frac"], c["soft_fn_frac"] = c["fp"] / v, c["fn"] / v   # perfectly calibrated
    rows = np.arange(len(table))
    assert mean_confidence_iou(c, rows) == pytest.approx(real_overall_iou(c, rows))


def test_atc_threshold_reproduces_the_reference_iou():
    prob = np.random.default_rng(0).beta(0.3, 0.3, size=(20, 32, 32)).astype(np.float32)
    hist = logit_histogram(prob).sum(axis=0)
    values = [atc_iou(hist, t) for t in np.linspace(0, 8, 17)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))  # falls with t
    assert values[0] == pytest.approx(1.0)
    for target in (0.3, 0.6, 0.9):
        t = fit_atc_threshold(hist, target)
        assert atc_iou(hist, t) == pytest.approx(target, abs=1e-6)
    assert hist.shape == (HIST_BINS,)


def test_union_weighted_patch_iou_is_the_overall_iou(table):
    c = dict(table.columns)
    v = valid_pixels(c)
    union = c["tp"] + c["fp"] + c["fn"]
    c["soft_fn_frac"] = c["fn"] / v              # expected misses = real misses: exact union
    np.testing.assert_allclose(expected_union(c), union)
    real_patch = np.where(union > 0, c["tp"] / np.maximum(union, 1), 0.0)
    assert weighted_iou(real_patch, c) == pytest.approx(
        real_overall_iou(c, np.arange(len(table))))
    assert weighted_iou(np.full(len(table), np.nan), c) is None


def test_region_model_estimates_every_method(table):
    cols = with_derived(table.columns)
    pca = LatentPCA(n_components=8).fit(table.embeddings)
    lat = pca.transform(table.embeddings)
    ests = fit_estimators(lat, cols, n_latent=4, seed=0)
    assert ests["mlp2d"][1] == ["pc1", "pc2"]
    assert ests["full"][1][-2:] == list(CONFIDENCE_FEATURES) and "pc4" in ests["full"][1]
    model = RegionModel(fit_atc(cols), ests)
    inside = np.arange(len(table)) % 3 > 0
    est = model.estimate(lat, cols, inside)
    assert set(est) == set(METHODS) and all(0 <= v <= 1 for v in est.values())
    real = real_overall_iou(cols, np.arange(len(table)))
    assert est["atc"] == pytest.approx(real, abs=1e-6)      # fitted on these very patches
    assert est["full"] == pytest.approx(real, abs=0.05)
    sub = take(cols, np.flatnonzero(inside))
    assert est["gated"] == pytest.approx(weighted_iou(model.per_patch(lat[inside], sub), sub))
    assert model.estimate(lat, cols, np.zeros(len(table), bool))["gated"] is None


def test_confidence_features():
    c = {"pred_frac": np.array([0.2, 0.0, 0.1]), "soft_fp_frac": np.array([0.05, 0.0, np.nan]),
         "soft_fn_frac": np.array([0.05, 0.0, 0.0]),
         "logit_hist": np.zeros((3, HIST_BINS), np.int32)}
    c["logit_hist"][:, 0] = 6          # very sure background
    c["logit_hist"][:, HIST_BINS // 2] = 2   # unsure buildings
    d = derived_columns(c)
    np.testing.assert_allclose(d["soft_iou"], [0.15 / 0.25, 0.0, np.nan])
    np.testing.assert_allclose(d["sure_frac"], [0.75, 0.75, 0.75])
    assert not has_confidence({"pred_frac": c["pred_frac"]})
    assert "soft_iou" in with_derived(c) and "soft_iou" not in with_derived({"x": 1})


def test_interval_and_coverage():
    lo, hi = interval(0.6, 0.03, 0.04)
    half = 1.6448536 * 0.05
    assert lo == pytest.approx(0.6 - half) and hi == pytest.approx(0.6 + half)
    assert interval(0.02, 0.1) == (0.0, pytest.approx(0.02 + 0.16448536))
    assert interval(None, 0.1) == (None, None) and interval(0.5, None) == (None, None)
    np.testing.assert_array_equal(covered(np.array([10.0, 95.0, 95.1, np.nan])),
                                  [True, True, False, False])
    assert COVERAGE_PERCENTILE == 95.0


def test_leave_one_region_out_holds_each_region_out(table):
    loo = leave_one_region_out(table, seed=0, max_fit=120)
    assert loo is not None and loo.unit == "region"
    assert [r["region"] for r in loo.rows] == sorted(REGIONS)
    region = np.asarray(table.columns["region"]).astype(str)
    for r in loo.rows:
        rows = np.flatnonzero(region == r["region"])
        assert r["patches"] == rows.size
        assert r["real_iou"] == pytest.approx(real_overall_iou(table.columns, rows))
        for m in METHODS:
            if m != "gated":
                assert r["errors"][m] == pytest.approx(r["estimates"][m] - r["real_iou"])
        if r["estimates"]["gated"] is not None:
            assert r["errors"]["gated"] == pytest.approx(
                r["estimates"]["gated"] - r["real_iou_covered"])
        assert 0.0 <= r["covered_share"] <= 1.0
    assert loo.capped["fit_capped"] and not loo.capped["eval_capped"]
    assert loo.residual_sd > 0 and loo.gated_rmse is not None
    errs = [abs(r["errors"]["full"]) for r in loo.rows]
    assert loo.mae["full"] == pytest.approx(np.mean(errs))
    assert loo.mae["full"] < 0.1   # learned confusion transfers between synthetic regions
    d = loo.to_dict()
    assert d["methods"] == list(METHODS) and d["unit"] == "region"


def test_images_are_the_units_with_too_few_regions():
    t = synthetic_table(n_images=6, grid=3, dim=16, seed=2, regions=("a", "b"))
    loo = leave_one_region_out(t, seed=0)
    assert loo is not None and loo.unit == "image" and len(loo.rows) == 6


def test_analysis_bundle_carries_region_model_and_baselines(reference):
    res, b = reference
    m = b.manifest
    assert m["region"]["headline"] == "gated" and m["region"]["methods"] == list(METHODS)
    assert m["region"]["atc_threshold"] == pytest.approx(res.atc_threshold)
    assert res.atc_threshold > 0
    assert m["region"]["interval"]["method_rmse"] == pytest.approx(res.baselines.gated_rmse)
    assert m["baselines"]["unit"] == "region" and len(m["baselines"]["rows"]) == 4
    assert m["coverage"]["novelty_max"] == COVERAGE_PERCENTILE
    assert m["label_errors"]["field"] == "label_error"
    assert m["estimators"]["full"]["features"][-2:] == list(CONFIDENCE_FEATURES)
    cols = b.patches
    np.testing.assert_array_equal(cols["covered"], covered(res.novelty_pct).astype(int))
    np.testing.assert_allclose(cols["label_error"], res.label_error, rtol=1e-6)


def test_new_region_gets_a_gated_estimate_with_interval(reference, tmp_path):
    res, b = reference
    near = synthetic_table(n_images=3, grid=4, dim=24, seed=11, split="new", regions=REGIONS)
    far = synthetic_table(n_images=3, grid=4, dim=24, seed=12, split="new",
                          regions=("informal",), region_shift=6.0)
    est = estimate_table(near, b)
    r = est.region
    assert r["method"] == "gated" and set(r["methods"]) == set(METHODS)
    assert r["covered_share"] > 0.5 and r["iou"] is not None
    lo, hi = r["interval90"]
    assert lo <= r["iou"] <= hi and r["real_iou"] is not None
    assert r["errors"]["gated"] == pytest.approx(r["iou"] - r["real_iou_covered"])
    assert r["covered_share"] + r["out_of_coverage_share"] == pytest.approx(1.0)
    with BundleWriter(tmp_path / "near.segx") as w:
        w.finish(write_estimate(w, est, b, {"patch_size": 64, "stride": 64}))
    nb = Bundle(tmp_path / "near.segx")
    assert nb.manifest["region_estimate"]["iou"] == pytest.approx(r["iou"])
    np.testing.assert_array_equal(nb.patches["covered"], covered(est.novelty_pct).astype(int))
    # a region far from the reference is out of coverage: no number is claimed
    r_far = estimate_table(far, b).region
    assert r_far["covered_share"] < 0.2
    if r_far["covered_patches"] == 0:
        assert r_far["iou"] is None and r_far["interval90"] is None


def test_similar_patches_across_bundles_of_one_latent_space(reference, tmp_path):
    from segexplain.core.bundle.similarity import Neighbour, SimilarityIndex, similarity_space

    res, b = reference
    near = synthetic_table(n_images=2, grid=4, dim=24, seed=13, split="new", regions=REGIONS)
    with BundleWriter(tmp_path / "near.segx") as w:
        w.finish(write_estimate(w, estimate_table(near, b), b, {"patch_size": 64}))
    other = synthetic_table(n_images=8, grid=3, dim=24, seed=14, regions=REGIONS)
    with BundleWriter(tmp_path / "other.segx") as w:   # another analysis: another space
        w.finish(write_analysis(w, analyze_table(other, clusters_max=4), {"patch_size": 64}))
    bundles = [b, Bundle(tmp_path / "near.segx"), Bundle(tmp_path / "other.segx")]
    idx = SimilarityIndex(bundles)
    assert idx.space_ids[0] == idx.space_ids[1] != idx.space_ids[2]
    assert bundles[1].manifest["latent_space"]["id"] == idx.space_ids[0]
    got = idx.nearest(0, 5, k=8)
    assert len(got) == 8 and {n.bundle for n in got} <= {0, 1}
    assert (0, 5) not in {(n.bundle, n.patch_id) for n in got}
    d = [n.distance for n in got]
    assert d == sorted(d)
    both = np.concatenate([similarity_space(bundles[0]), similarity_space(bundles[1])])
    brute = np.sqrt(((both - similarity_space(bundles[0])[5]) ** 2).sum(axis=1))
    brute[5] = np.inf
    np.testing.assert_allclose(d, np.sort(brute)[:8], rtol=1e-5)
    assert idx.nearest(0, 5, k=1, include_self=True)[0] == Neighbour(0, 5, 0.0)
