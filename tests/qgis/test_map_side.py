"""The map side at scale: R-tree, footprints drawn only when zoomed in, the overview, and
the layer selection kept exact through incremental updates and map-side changes."""

import shutil
import sqlite3

import bundle_factory
import numpy as np
import pytest
from qgis.core import QgsFeatureSource, QgsUnitTypes, QgsVectorLayer
from segexplain.segexplain_qgis.layers import FOOTPRINT_MIN_PX
from segexplain.segexplain_qgis.link import FootprintLink, fid_mapping_from_gpkg
from segexplain.segexplain_qgis.selection import combine
from test_explorer import features

pytestmark = pytest.mark.qgis


@pytest.fixture(scope="module")
def big_bundle(qgis_app, tmp_path_factory):
    """A synthetic bundle of 2 x 100 x 100 patches (as the real writer writes it)."""
    return bundle_factory.write_bundle(tmp_path_factory.mktemp("big") / "big.segx",
                                       n_images=2, grid=(100, 100), patch_px=4, thumb=4,
                                       n_clusters=8, seed=3)


def test_footprints_have_a_spatial_index_and_a_scale_limit(dock):
    fp = dock.base.layers.footprints
    assert fp.hasSpatialIndex() == QgsFeatureSource.SpatialIndexPresent
    box = next(fp.getFeatures()).geometry().boundingBox()
    metres = max(box.width(), box.height()) * QgsUnitTypes.fromUnitToUnitFactor(
        fp.crs().mapUnits(), QgsUnitTypes.DistanceUnit.DistanceMeters)
    assert fp.hasScaleBasedVisibility()
    assert fp.minimumScale() == pytest.approx(metres * 96 / (0.0254 * FOOTPRINT_MIN_PX))
    assert fp.isInScaleRange(fp.minimumScale() / 2) and not fp.isInScaleRange(
        fp.minimumScale() * 2)


def test_selection_on_a_big_layer_stays_exact(plugin, big_bundle, qgis_canvas):
    plugin.open_bundle(big_bundle)
    dock = plugin.dock
    s = dock.base
    fp = s.layers.footprints
    link = s.link
    assert s.n == 20_000 and link.identity  # FIDs 1..n in patch_id order, confirmed
    feats = features(fp)
    pc = np.array([(v[1], v[2]) for _, v in sorted(feats.items())])
    fid = np.array([v[0] for _, v in sorted(feats.items())])

    def inside(x0, y0, x1, y1):
        return (pc[:, 0] >= x0) & (pc[:, 0] <= x1) & (pc[:, 1] >= y0) & (pc[:, 1] <= y1)

    def assert_layer_is(mask):
        assert sorted(fp.selectedFeatureIds()) == sorted(fid[mask].tolist())
        assert np.array_equal(s.selected, mask)

    # zoomed out on the whole layer: footprints are not drawn, the overview is
    qgis_canvas.resize(800, 600)
    qgis_canvas.setDestinationCrs(fp.crs())
    qgis_canvas.setExtent(fp.extent())
    assert not fp.isInScaleRange(qgis_canvas.scale())
    q = np.quantile(pc, [0.2, 0.6, 0.5, 0.9], axis=0)
    want = inside(q[0, 0], q[0, 1], q[1, 0], q[1, 1])
    dock.brush_rect(q[0, 0], q[0, 1], q[1, 0], q[1, 1])
    assert_layer_is(want)
    overview = dock._map.overview
    image = overview.image()
    assert image is not None and overview.drawn(s.key)
    # the overview marks the cell of a selected patch and leaves an unselected one alone
    ext, mupp = qgis_canvas.extent(), qgis_canvas.mapUnitsPerPixel()
    box = next(fp.getFeatures([int(fid[np.flatnonzero(want)[0]])])).geometry().boundingBox()
    c = box.center()
    px, py = (c.x() - ext.xMinimum()) / mupp, (ext.yMaximum() - c.y()) / mupp
    assert image.pixelColor(int(px), int(py)).alpha() > 0
    # shift: only the added patches go to the layer; ctrl: only the removed ones
    for mode, rect in (("add", (q[2, 0], q[2, 1], q[3, 0], q[3, 1])),
                       ("subtract", (q[0, 0], q[0, 1], q[2, 0], q[2, 1]))):
        want = combine(want, inside(*rect), mode)
        dock.brush_rect(*rect, mode)
        assert_layer_is(want)
    # a selection made on the map comes back, and the next brush starts from it
    some = fid[:50].tolist()
    fp.selectByIds(some)
    want = np.zeros(s.n, bool)
    want[:50] = True
    assert_layer_is(want)
    rect = (q[0, 0], q[0, 1], q[1, 0], q[1, 1])
    want = combine(want, inside(*rect), "add")
    dock.brush_rect(*rect, "add")
    assert_layer_is(want)
    # zoomed in on a few patches: the footprints are drawn, the overview steps aside
    qgis_canvas.setCenter(c)
    qgis_canvas.zoomScale(fp.minimumScale() / 4)
    assert fp.isInScaleRange(qgis_canvas.scale())
    assert overview.image() is None and not overview.drawn(s.key)
    dock.clear_selection()
    assert fp.selectedFeatureIds() == []


def test_fid_mapping_when_rows_are_not_in_patch_order(explorer_bundle, tmp_path, qgis_app):
    copy = tmp_path / "shuffled.gpkg"
    shutil.copy(explorer_bundle / "patches.gpkg", copy)
    con = sqlite3.connect(copy)
    for fn in ("ST_IsEmpty", "ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY"):
        con.create_function(fn, 1, lambda _g: 0)  # named by the R-tree triggers, not run
    n = con.execute("SELECT count(*) FROM patches").fetchone()[0]
    con.execute("UPDATE patches SET patch_id = CASE fid WHEN 1 THEN 1 WHEN 2 THEN 0 "
                "ELSE patch_id END")
    con.commit()
    con.close()
    fids = fid_mapping_from_gpkg(copy, n)
    assert fids[0] == 2 and fids[1] == 1 and (fids[2:] == np.arange(3, n + 1)).all()
    layer = QgsVectorLayer(f"{copy}|layername=patches", "shuffled", "ogr")
    link = FootprintLink(layer, n, copy)
    assert not link.identity
    mask = np.zeros(n, bool)
    mask[[0, 5]] = True
    link.push(mask)
    assert sorted(layer.selectedFeatureIds()) == [2, 6]
    assert np.array_equal(link.mask_from_layer(), mask)
    assert link.patch_ids_of([1, 2, 10**9]).tolist() == [0, 1]
    link.disconnect()
