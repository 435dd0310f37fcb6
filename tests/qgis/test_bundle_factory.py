"""The synthetic bundles of bundle_factory have the schema of the real pipeline's bundles.

bundle_factory writes through `core.bundle.writer`; this test ties what the writer cannot
fix (manifest keys, image records, array names and types) to bundles that
`segexplain analyze` / `segexplain estimate` wrote (the session's tiny run).
"""

import json
import sqlite3

import bundle_factory
import numpy as np
import pytest
from segexplain.core.bundle.reader import Bundle

#: What only a bundle with ground truth carries (the tiny run's estimate region has labels,
#: the synthetic estimate has none).
LABELLED_ONLY = {"estimate_scores", "auroc_vs_reference_val", "thumbs_label"}
#: Manifest entries whose own keys are compared too.
NESTED = ("pca", "heatmap", "clustering", "novelty", "model", "stats")


def gpkg_schema(bundle):
    con = sqlite3.connect(f"file:{bundle / 'patches.gpkg'}?mode=ro", uri=True)
    try:
        tables = sorted(r[0] for r in con.execute("SELECT table_name FROM gpkg_contents"))
        return {t: [(r[1], r[2]) for r in con.execute(f'PRAGMA table_info("{t}")')]
                for t in tables}
    finally:
        con.close()


def run_metadata_keys(bundle):
    con = sqlite3.connect(f"file:{bundle / 'patches.gpkg'}?mode=ro", uri=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT key FROM run_metadata"))
    finally:
        con.close()


def arrays(bundle):
    return {p.stem: (np.load(p, mmap_mode="r", allow_pickle=False).dtype.str,
                     np.load(p, mmap_mode="r", allow_pickle=False).ndim)
            for p in sorted((bundle / "arrays").glob("*.npy"))}


def keys(d, drop=()):
    return sorted(set(d) - set(drop))


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    where = tmp_path_factory.mktemp("synthetic")
    analysis = bundle_factory.write_bundle(where / "tiny.segx")
    estimate = bundle_factory.write_bundle(where / "new.segx", kind="estimate", seed=1,
                                           reference=analysis)
    return {"analysis": analysis, "estimate": estimate}


@pytest.fixture(scope="module")
def real(request):
    return {"analysis": request.getfixturevalue("tiny_bundle"),
            "estimate": request.getfixturevalue("tiny_estimate_bundle")}


@pytest.mark.parametrize("kind", ["analysis", "estimate"])
def test_layers_columns_and_types_are_the_writers(kind, synthetic, real):
    assert gpkg_schema(synthetic[kind]) == gpkg_schema(real[kind])
    assert run_metadata_keys(synthetic[kind]) == [
        k for k in run_metadata_keys(real[kind]) if k not in LABELLED_ONLY]


@pytest.mark.parametrize("kind", ["analysis", "estimate"])
def test_manifest_keys_are_the_pipelines(kind, synthetic, real):
    ours = Bundle(synthetic[kind]).manifest       # the core reader accepts it
    theirs = Bundle(real[kind]).manifest
    assert ours["kind"] == theirs["kind"] == kind
    assert keys(ours) == keys(theirs, LABELLED_ONLY)
    for name in NESTED:
        assert keys(ours[name]) == keys(theirs[name], LABELLED_ONLY), name
    assert [keys(im) for im in ours["images"]] == [keys(theirs["images"][0])] * len(
        ours["images"])
    assert sorted(ours["estimators"]) == sorted(theirs["estimators"])
    for name, entry in ours["estimators"].items():
        assert keys(entry) == keys(theirs["estimators"][name]), name
    assert set(ours["files"]) == {p.relative_to(synthetic[kind]).as_posix()
                                  for p in synthetic[kind].rglob("*")
                                  if p.is_file() and p.name != "manifest.json"}


@pytest.mark.parametrize("kind", ["analysis", "estimate"])
def test_array_names_and_types_are_the_pipelines(kind, synthetic, real):
    theirs = arrays(real[kind])
    if kind == "estimate":
        theirs.pop("thumbs_label", None)
    assert arrays(synthetic[kind]) == theirs
    manifest = json.loads((synthetic[kind] / "manifest.json").read_text())
    listed = {a for e in manifest["estimators"].values() for a in e["arrays"]}
    if kind == "analysis":
        assert listed <= set(theirs)
