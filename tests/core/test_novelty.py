import numpy as np
import pytest
from segexplain.core.analytics.novelty import KNNNovelty, auroc, knn_distance, percentile_of


def test_knn_distance_matches_sklearn_and_chunks():
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    ref = rng.normal(size=(300, 6))
    q = rng.normal(size=(50, 6))
    d, _ = NearestNeighbors(n_neighbors=5).fit(ref).kneighbors(q)
    np.testing.assert_allclose(knn_distance(q, ref, 5, chunk_elems=1000), d.mean(axis=1),
                               rtol=1e-4)


def test_leave_one_out_and_groups():
    ref = np.array([[0.0], [1.0], [3.0], [10.0]])
    d = knn_distance(ref, ref, 1, exclude_self=np.arange(4))
    np.testing.assert_allclose(d, [1, 1, 2, 7], rtol=1e-6)
    g = np.array([0, 0, 1, 1])
    d = knn_distance(ref, ref, 1, g, g)  # neighbours from the other group only
    np.testing.assert_allclose(d, [3, 2, 2, 9], rtol=1e-6)


def test_percentiles_and_shifted_region_is_novel():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(400, 5))
    groups = np.repeat(np.arange(8), 50)
    nov = KNNNovelty(k=5).fit(ref, groups)
    assert nov.grouped_ and nov.reference_distances_.size == 400
    same = rng.normal(size=(100, 5))
    far = rng.normal(size=(100, 5)) + 4.0
    p_same, p_far = nov.score(same), nov.score(far)
    assert 20 < np.median(p_same) < 80
    assert (p_far > 99).mean() > 0.9
    assert auroc(nov.distance(far), nov.distance(same)) > 0.99


def test_reference_subsample_is_bounded():
    ref = np.random.default_rng(2).normal(size=(500, 3))
    nov = KNNNovelty(k=3, max_reference_queries=100).fit(ref)
    assert nov.reference_distances_.size == 100 and not nov.grouped_


def test_percentile_of_and_auroc():
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(percentile_of(np.array([0.0, 2.0, 5.0, np.nan]), ref),
                               [0.0, 37.5, 100.0, np.nan])
    assert auroc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auroc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    assert auroc(np.array([1.0, 3.0]), np.array([2.0])) == pytest.approx(0.5)
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    a, b = rng.normal(size=40).round(1), rng.normal(0.5, size=30).round(1)
    assert auroc(a, b) == pytest.approx(roc_auc_score(np.r_[np.ones(40), np.zeros(30)],
                                                      np.r_[a, b]))
