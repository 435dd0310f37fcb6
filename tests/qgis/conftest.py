"""Fixtures for the plugin tests: bundles (the real pipeline's when available), plugin, dock."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bundle_factory  # noqa: E402


def _real_or_synthetic(request, name: str, make, env: str):
    """A bundle for the plugin tests, first match wins.

    1. the folder in environment variable `env` (a bundle made by hand with the CLI);
    2. a synthetic bundle when SEGEXPLAIN_SYNTHETIC_BUNDLES=1 (pipeline under repair);
    3. the real pipeline's session fixture `name`;
    4. a synthetic bundle when that fixture is not defined.
    """
    if os.environ.get(env):
        return Path(os.environ[env])
    if os.environ.get("SEGEXPLAIN_SYNTHETIC_BUNDLES") == "1":
        return make()
    try:
        return Path(request.getfixturevalue(name))
    except pytest.FixtureLookupError:
        return make()


@pytest.fixture(scope="session")
def explorer_bundle(request, qgis_app, tmp_path_factory) -> Path:
    """A small analysis bundle (two images, labels, clusters, heatmap)."""
    return _real_or_synthetic(request, "tiny_bundle", lambda: bundle_factory.write_bundle(
        tmp_path_factory.mktemp("bundles") / "tiny.segx"), "SEGEXPLAIN_TEST_BUNDLE")


@pytest.fixture(scope="session")
def explorer_estimate(request, qgis_app, tmp_path_factory, explorer_bundle) -> Path:
    """A small estimate bundle of a new region (no labels) in the same plane."""
    return _real_or_synthetic(request, "tiny_estimate_bundle",
                              lambda: bundle_factory.write_bundle(
                                  tmp_path_factory.mktemp("bundles") / "newregion.segx",
                                  kind="estimate", seed=1, reference=explorer_bundle),
                              "SEGEXPLAIN_TEST_ESTIMATE")


@pytest.fixture
def plugin(qgis_iface, qgis_new_project):
    """The plugin with its GUI initialised; unloaded after the test."""
    from segexplain import classFactory

    p = classFactory(qgis_iface)
    p.initGui()
    yield p
    p.unload()


@pytest.fixture
def dock(plugin, explorer_bundle):
    """The explorer dock with the analysis bundle open."""
    plugin.open_bundle(explorer_bundle)
    assert plugin.dock is not None and plugin.dock.base is not None
    return plugin.dock
