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


def test_dbscan_wins_on_non_convex_shapes():
    rng = np.random.default_rng(1)
    t = rng.uniform(0, np.pi, 300)
    moon1 = np.column_stack([np.cos(t), np.sin(t)])
    moon2 = np.column_stack([1 - np.cos(t), 0.5 - np.sin(t)])
    # two dense rings far apart: DBSCAN separates them exactly; compare silhouettes
    x = np.concatenate([moon1, moon2 + [6, 0]]) + rng.normal(0, 0.03, (600, 2))
    cl = LatentClustering(k_max=6, dbscan_min_samples=5).fit(x)
    assert cl.dbscan_["clusters"] >= 2 and cl.dbscan_["eps"] > 0
    assert np.isfinite(cl.silhouette_)
    assert cl.method_ in ("kmeans", "dbscan")
    if cl.method_ == "dbscan":
        assert cl.dbscan_["silhouette"] > max(v for v in cl.sweep_.values() if np.isfinite(v))


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
