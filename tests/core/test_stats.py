import numpy as np
import pytest
from segexplain.core.analytics.stats import pixel_figures, run_statistics
from segexplain.core.sample.synthetic import synthetic_table


def test_pixel_figures_sum_counts_not_means():
    a = {"tp": 90, "fp": 10, "fn": 0, "tn": 900}
    b = {"tp": 0, "fp": 50, "fn": 50, "tn": 900}
    f = pixel_figures([a, b])
    # total intersection over total union: 90 / 200, not the mean of 0.9 and 0.0
    assert f["overall_iou"] == pytest.approx(90 / 200)
    assert f["accuracy"] == pytest.approx(1890 / 2000)
    assert f["precision"] == pytest.approx(90 / 150) and f["recall"] == pytest.approx(90 / 140)
    assert pixel_figures([])["overall_iou"] is None


def test_run_statistics_by_region_and_split():
    t = synthetic_table(n_images=6, grid=2, dim=8, regions=("a", "b"))
    t.columns["iou"][0] = np.nan  # an excluded patch
    s = run_statistics(t)
    assert s["overall"]["patches"] == 24 and s["overall"]["patches_with_iou"] == 23
    assert set(s["by_region"]) == {"a", "b"} and set(s["by_split"]) == {"train", "val"}
    assert s["by_region"]["a"]["images"] == 3 and s["by_split"]["val"]["images"] == 2
    ims = [im for im in t.images if im.region == "b"]
    tp = sum(im.counts["tp"] for im in ims)
    union = sum(im.counts["tp"] + im.counts["fp"] + im.counts["fn"] for im in ims)
    assert s["by_region"]["b"]["overall_iou"] == pytest.approx(tp / union)
    rows = np.flatnonzero(t.columns["region"] == "a")
    assert s["by_region"]["a"]["mean_patch_iou"] == pytest.approx(
        np.nanmean(t.columns["iou"][rows]))
