import numpy as np
import pytest
from segexplain.core.analytics.latent import LatentPCA, plane_grid, project
from segexplain.core.errors import ConfigurationError, EmptyInputError


def _data(n=600, d=40, seed=0):
    rng = np.random.default_rng(seed)
    scales = np.linspace(5.0, 0.1, d)
    return (rng.normal(size=(n, d)) * scales + 100.0).astype(np.float32)


def test_matches_sklearn_pca_up_to_sign():
    from sklearn.decomposition import PCA

    x = _data()
    ours = LatentPCA(n_components=10, normalize="none", chunk_rows=97).fit(x)  # chunked
    ref = PCA(n_components=10, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-4)
    dots = np.abs((ours.components_ * ref.components_).sum(axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-3)
    np.testing.assert_allclose(ours.mean_, ref.mean_, rtol=1e-5)
    t_ours = ours.transform(x)
    t_ref = ref.transform(x) * np.sign((ours.components_ * ref.components_).sum(axis=1))
    np.testing.assert_allclose(t_ours, t_ref, atol=2e-3)


def test_sign_is_deterministic_and_components_capped():
    x = _data(n=30, d=64)
    a = LatentPCA(n_components=50).fit(x)
    b = LatentPCA(n_components=50).fit(x[::-1].copy())
    assert a.components_.shape == (30, 64)  # min(N, D, 50)
    np.testing.assert_allclose(a.components_[:5], b.components_[:5], atol=1e-4)
    top = np.abs(a.components_).argmax(axis=1)
    assert (a.components_[np.arange(a.components_.shape[0]), top] > 0).all()


def test_from_arrays_and_project_reproduce_transform():
    x = _data()
    pca = LatentPCA(n_components=8).fit(x)
    again = LatentPCA.from_arrays(pca.mean_, pca.components_, pca.explained_variance_ratio_)
    np.testing.assert_array_equal(again.transform(x), pca.transform(x))
    np.testing.assert_array_equal(project(x, pca.mean_, pca.components_, "l2"), pca.transform(x))


def test_errors():
    with pytest.raises(EmptyInputError):
        LatentPCA().fit(np.zeros((1, 4), np.float32))
    pca = LatentPCA(n_components=2).fit(_data(n=20, d=6))
    with pytest.raises(ConfigurationError, match="expected \\(N, 6\\)"):
        pca.transform(np.zeros((3, 5), np.float32))


def test_plane_grid_covers_points_with_margin():
    pts = np.array([[0.0, -1.0], [10.0, 1.0], [5.0, 0.0]])
    xy, extent = plane_grid(pts, (4, 8), margin=0.1)
    assert extent == pytest.approx([-1.0, 11.0, -1.2, 1.2])
    assert xy.shape == (32, 2)
    # row 0 is the lowest pc2, columns run along pc1
    assert xy[0, 1] < xy[-1, 1] and xy[0, 0] < xy[7, 0]
    assert (xy[:, 0] > extent[0]).all() and (xy[:, 0] < extent[1]).all()


def test_l2_normalised_pca_is_pca_of_unit_vectors():
    from sklearn.decomposition import PCA

    x = _data(n=200, d=12) * np.random.default_rng(5).uniform(0.5, 3, size=(200, 1))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ours = LatentPCA(n_components=4).fit(x)
    ref = PCA(n_components=4).fit(unit.astype(np.float64))
    np.testing.assert_allclose(ours.explained_variance_ratio_, ref.explained_variance_ratio_,
                               rtol=1e-3)
    # the length of a vector no longer matters
    np.testing.assert_allclose(ours.transform(x * 7.0), ours.transform(x), atol=1e-5)
    again = LatentPCA.from_arrays(ours.mean_, ours.components_, normalize="l2")
    np.testing.assert_allclose(again.transform(x), ours.transform(x), atol=1e-6)
    with pytest.raises(ConfigurationError):
        LatentPCA(normalize="max").fit(x)


def test_whiten_drops_empty_components():
    from segexplain.core.analytics.latent import whiten

    lat = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 5.0]], np.float32)
    w = whiten(lat, np.array([0.25, 0.04, 0.0]))
    np.testing.assert_allclose(w, [[2.0, 10.0], [6.0, 20.0]], rtol=1e-6)
