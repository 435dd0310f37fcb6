import numpy as np
import pytest
from segexplain.core.analytics.clustering import LatentClustering, cluster_table, knee_point
from segexplain.core.errors import ConfigurationError


def _blobs(k=4, n_per=60, d=5, seed=0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 6
    x = np.concatenate([c + rng.normal(size=(n_per, d)) * spread for c in centres])
    truth = np.repeat(np.arange(k), n_per)
    return x.astype(np.float32), truth


def _same_partition(a, b):
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(a, b)


def test_kmeans_sweep_finds_k():
    x, truth = _blobs(k=4)
    cl = LatentClustering(k_max=8, dbscan_min_samples=5).fit(x)
    assert cl.sweep_[4] == max(cl.sweep_.values())
    assert cl.k_ == 4 and _same_partition(cl.labels_, truth) > 0.99
    assert set(cl.sweep_) == set(range(2, 9))
    assert cl.summary()["k"] == 4


def _arc_and_two_blobs(seed, convex=False):
    """A long arc (1000 points; a disc of the same weight with `convex`) and two small tight
    blobs far from it and from each other. KMeans cannot keep the arc whole and the blobs
    apart at once: with 2 centres it merges the blobs, with more it cuts the arc first
    (cutting it lowers the squared error more than parting the blobs)."""
    rng = np.random.default_rng(seed)
    if convex:
        big = rng.normal(0.0, 3.0, (1000, 2))
    else:
        t = np.linspace(0.0, 1.5 * np.pi, 1000)
        big = 10.0 * np.column_stack([np.cos(t), np.sin(t)]) + rng.normal(0, 0.05, (1000, 2))
    blobs = [rng.normal(0.0, 0.3, (100, 2)) + centre for centre in ([50, -15], [50, 15])]
    return np.concatenate([big, *blobs]), np.repeat([0, 1, 2], [1000, 100, 100])


@pytest.mark.parametrize("seed", [0, 1])
def test_dbscan_wins_on_non_convex_shapes(seed):
    x, truth = _arc_and_two_blobs(seed)
    cl = LatentClustering(k_max=6, dbscan_min_samples=10).fit(x)
    assert cl.method_ == "dbscan" and cl.k_ == 3
    assert cl.silhouette_ > max(v for v in cl.sweep_.values() if np.isfinite(v))
    kept = cl.labels_ >= 0
    assert cl.dbscan_["noise_frac"] < 0.03
    assert _same_partition(cl.labels_[kept], truth[kept]) > 0.98
    assert len(set(cl.labels_[:1000][kept[:1000]].tolist())) == 1  # the arc stays whole
    # the same layout with a convex shape in place of the arc: KMeans finds it and keeps it
    x, truth = _arc_and_two_blobs(seed, convex=True)
    cl = LatentClustering(k_max=6, dbscan_min_samples=10).fit(x)
    assert cl.method_ == "kmeans" and cl.k_ == 3
    assert _same_partition(cl.labels_, truth) > 0.99


def test_dbscan_subsample_assigns_rest():
    x, truth = _blobs(k=3, n_per=400, d=3, spread=0.2)
    cl = LatentClustering(k_max=4, dbscan_min_samples=5, max_dbscan_samples=300,
                          kmeans_fit_samples=500, silhouette_sample=400).fit(x)
    assert cl.labels_.shape == (1200,) and cl.dbscan_labels_.shape == (1200,)
    assert cl.dbscan_["noise_frac"] < 0.2
    assert cl.dbscan_["clusters"] == 3
    kept = cl.dbscan_labels_ >= 0
    assert _same_partition(cl.dbscan_labels_[kept], truth[kept]) > 0.99


def test_knee_point():
    curve = np.concatenate([np.linspace(0, 1, 90), np.linspace(1, 20, 10)])
    assert 85 <= knee_point(curve) <= 91
    assert knee_point(np.array([1.0])) == 0


def test_cluster_table():
    x, truth = _blobs(k=2, n_per=10, d=2)
    cols = {"patch_id": np.arange(20) + 100, "iou": np.r_[np.full(10, 0.2), np.full(10, 0.8)],
            "label_frac": np.full(20, 0.1), "pred_frac": np.full(20, 0.2),
            "region": np.array(["a"] * 15 + ["b"] * 5, dtype=object)}
    cols["iou"][0] = np.nan
    rows = cluster_table(truth, x, cols, n_representatives=3)
    assert [r["size"] for r in rows] == [10, 10]
    assert rows[0]["mean_iou"] == pytest.approx(0.2) and rows[1]["median_iou"] == pytest.approx(0.8)
    assert rows[1]["region_mix"] == {"a": 5, "b": 5}
    assert len(rows[0]["representatives"]) == 3
    assert all(100 <= p < 110 for p in rows[0]["representatives"])
    centre = x[:10].mean(axis=0)
    nearest = 100 + int(np.argmin(((x[:10] - centre) ** 2).sum(axis=1)))
    assert rows[0]["representatives"][0] == nearest


def test_bad_range():
    with pytest.raises(ConfigurationError):
        LatentClustering(k_min=5, k_max=3).fit(np.zeros((10, 2)))
