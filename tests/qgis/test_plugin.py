"""The plugin in a real QGIS: actions, bundle layers and styles, drops, clean unload."""

import json
import shutil

import numpy as np
import pytest
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsGraduatedSymbolRenderer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtCore import QCoreApplication, QEvent
from qgis.PyQt.QtWidgets import QDockWidget, QToolBar
from segexplain.core.bundle.reader import Bundle
from segexplain.segexplain_qgis import layers
from segexplain.segexplain_qgis.dock import ExplorerDock
from segexplain.segexplain_qgis.plugin import MENU, BundleDropHandler, bundle_folder_of

pytestmark = pytest.mark.qgis


def flush():
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()


def group_of(bundle_path):
    name = "segexplain: " + bundle_path.name.removesuffix(".segx")
    return QgsProject.instance().layerTreeRoot().findGroup(name)


def test_plugin_loads_with_menu_and_toolbar_and_unloads(qgis_iface, qgis_new_project):
    from segexplain import classFactory

    plugin = classFactory(qgis_iface)
    plugin.initGui()
    main = qgis_iface.mainWindow()
    bars = [t for t in main.findChildren(QToolBar) if t.objectName() == "segexplainToolbar"]
    assert len(bars) == 1
    names = [a.objectName() for a in bars[0].actions()]
    assert names == ["segexplainOpenBundle", "segexplainShowExplorer"]
    for action in plugin.actions:
        qgis_iface.addPluginToRasterMenu.assert_any_call(MENU, action)
        assert not action.icon().isNull()
    qgis_iface.registerCustomDropHandler.assert_called_once_with(plugin.drop_handler)
    actions = list(plugin.actions)
    handler = plugin.drop_handler

    plugin.unload()
    flush()
    for action in actions:
        qgis_iface.removePluginRasterMenu.assert_any_call(MENU, action)
    qgis_iface.unregisterCustomDropHandler.assert_called_once_with(handler)
    assert [t for t in main.findChildren(QToolBar)
            if t.objectName() == "segexplainToolbar"] == []
    assert plugin.actions == [] and plugin.dock is None


def test_bundle_opens_as_styled_group(plugin, explorer_bundle):
    plugin.open_bundle(explorer_bundle)
    assert plugin.iface.messageBar().get_messages(2) == []
    group = group_of(explorer_bundle)
    assert group is not None
    bundle = Bundle(explorer_bundle)
    dock = plugin.dock
    bl = dock.base.layers
    names = [child.name() for child in group.children()]
    assert names[0] == bl.footprints.name()
    # footprints: graduated by IoU, further named styles by estimated IoU and cluster
    fp = bl.footprints
    assert fp.featureCount() == len(bundle)
    assert isinstance(fp.renderer(), QgsGraduatedSymbolRenderer)
    assert fp.renderer().classAttribute() == "iou"
    styles = fp.styleManager().styles()
    assert {layers.STYLE_IOU, layers.STYLE_CLUSTER, layers.STYLE_EST} <= set(styles)
    fp.styleManager().setCurrentStyle(layers.STYLE_CLUSTER)
    assert fp.renderer().classAttribute() == "cluster"
    cluster_values = {int(c.value()) for c in fp.renderer().categories()}
    assert cluster_values == {int(c) for c in bundle.patches["cluster"]}
    # error overlay: TP / FP / FN three distinct opaque colours, TN transparent
    for im in bundle.manifest["images"]:
        conf = bl.rasters[f"{im['name']}:confusion"]
        r = conf.renderer()
        assert isinstance(r, QgsPalettedRasterRenderer)
        colors = {c.value: c.color for c in r.classes()}
        assert colors[0].alpha() == 0
        assert len({colors[v].name() for v in (1, 2, 3)}) == 3
        assert min(colors[v].alpha() for v in (1, 2, 3)) >= 150
        pred = bl.rasters[f"{im['name']}:prediction"]
        assert isinstance(pred.renderer(), QgsPalettedRasterRenderer)
        # the image (a sample tile) as a raster layer with the right CRS and extent
        img = bl.rasters[f"{im['name']}:image"]
        assert img.isValid()
        assert img.crs() == QgsCoordinateReferenceSystem.fromWkt(im["crs_wkt"])
        a, _b, c, _d, e, f = im["transform"]
        want = QgsRectangle(c, f + e * im["height"], c + a * im["width"], f)
        got = img.extent()
        tol = abs(a) * 1e-3
        assert abs(got.xMinimum() - want.xMinimum()) < tol
        assert abs(got.xMaximum() - want.xMaximum()) < tol
        assert abs(got.yMinimum() - want.yMinimum()) < tol
        assert abs(got.yMaximum() - want.yMaximum()) < tol
        assert (img.width(), img.height()) == (im["width"], im["height"])
        assert pred.extent() == img.extent() and pred.crs() == img.crs()
    assert dock.convention.text().startswith(
        f"IoU convention: {bundle.manifest['iou_convention']}")


def test_estimate_bundle_opens_alone_with_estimated_iou(plugin, explorer_estimate):
    plugin.open_bundle(explorer_estimate)
    assert plugin.iface.messageBar().get_messages(2) == []
    s = plugin.dock.base
    assert s.kind == "estimate"
    fp = s.layers.footprints
    # labelled estimates keep IoU; without labels estimated IoU takes its place
    assert fp.renderer().classAttribute() == ("iou" if s.has_labels else "est_iou")
    assert layers.STYLE_NOVELTY in fp.styleManager().styles()
    est = [k for k in s.layers.rasters if k.endswith(":est_iou")]
    assert est
    assert isinstance(s.layers.rasters[est[0]].renderer(), QgsSingleBandPseudoColorRenderer)
    combo = plugin.dock.color_combo
    choices = [combo.itemText(i) for i in range(combo.count())]
    assert "estimated IoU" in choices and "novelty" in choices
    if not s.has_labels:
        assert "IoU" not in choices
        assert combo.currentText() == "estimated IoU"
        assert "mean estimated IoU" in plugin.dock.stats.text()
    plugin.dock.set_color_by("novelty")
    assert plugin.dock.scatter.point_bar.getAxis("left").labelText.startswith("novelty")


def test_estimate_overlays_on_reference_plane(plugin, explorer_bundle, explorer_estimate):
    plugin.open_bundle(explorer_bundle)
    plugin.open_bundle(explorer_estimate)
    dock = plugin.dock
    assert len(dock.sessions) == 2 and dock.base.kind == "analysis"
    est = dock.sessions[1]
    item = dock.scatter.overlays[est.key]
    xd, yd = item.getData()
    assert np.allclose(xd, est.x) and np.allclose(yd, est.y)
    assert item.square and not dock.scatter.base.square  # a distinct marker
    assert item.outline is not None
    assert group_of(explorer_bundle) is not None and group_of(explorer_estimate) is not None
    # a brush selects in both bundles, each mirrored on its own footprint layer
    dock.brush_rect(-1e12, -1e12, 1e12, 1e12)
    for s in dock.sessions:
        assert len(s.layers.footprints.selectedFeatureIds()) == s.n
    # opening the same bundle twice (here through its GeoPackage) does not duplicate it
    n_layers = len(QgsProject.instance().mapLayers())
    plugin.open_bundle(explorer_estimate / "patches.gpkg")
    assert len(dock.sessions) == 2
    assert len(QgsProject.instance().mapLayers()) == n_layers
    # the estimate was projected into this reference's plane: no warning
    assert plugin.iface.messageBar().get_messages(1) == []


def test_estimate_of_another_reference_is_flagged(plugin, explorer_bundle, explorer_estimate,
                                                  tmp_path):
    other = tmp_path / "other.segx"
    shutil.copytree(explorer_bundle, other)
    plugin.open_bundle(other)
    plugin.open_bundle(explorer_estimate)
    warnings = plugin.iface.messageBar().get_messages(1)
    assert len(warnings) == 1 and "another latent plane" in warnings[0]
    assert len(plugin.dock.sessions) == 2


def test_drop_handler_opens_folder_or_geopackage(plugin, explorer_bundle, tmp_path):
    handler = BundleDropHandler(plugin)
    assert bundle_folder_of(explorer_bundle / "patches.gpkg") == explorer_bundle
    assert not handler.handleFileDrop(str(tmp_path))
    assert handler.handleFileDrop(str(explorer_bundle / "patches.gpkg"))
    assert plugin.dock is not None and len(plugin.dock.sessions) == 1
    plugin.close_dock()
    assert handler.handleFileDrop(str(explorer_bundle))
    assert len(plugin.dock.sessions) == 1


def test_broken_bundle_reported_in_message_bar(plugin, explorer_bundle, tmp_path):
    broken = tmp_path / "broken.segx"
    shutil.copytree(explorer_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["complete"] = False
    (broken / "manifest.json").write_text(json.dumps(manifest))
    before = set(QgsProject.instance().mapLayers())
    plugin.open_bundle(broken)
    msgs = plugin.iface.messageBar().get_messages(2)
    assert len(msgs) == 1 and "incomplete" in msgs[0] and "broken.segx" in msgs[0]
    assert set(QgsProject.instance().mapLayers()) == before
    assert plugin.dock is not None and plugin.dock.sessions == []


def test_close_dock_and_unload_leave_nothing_behind(qgis_iface, qgis_new_project,
                                                     explorer_bundle, explorer_estimate):
    from segexplain import classFactory

    project = QgsProject.instance()
    receivers_before = project.receivers(project.layersWillBeRemoved)
    plugin = classFactory(qgis_iface)
    plugin.initGui()
    plugin.open_bundle(explorer_bundle)
    plugin.open_bundle(explorer_estimate)
    dock = plugin.dock
    fp = dock.base.layers.footprints
    assert fp.receivers(fp.selectionChanged) >= 1
    assert project.receivers(project.layersWillBeRemoved) > receivers_before
    dock.brush_rect(-1e12, -1e12, 1e12, 1e12)
    plugin.close_dock()
    flush()
    assert plugin.dock is None
    assert project.mapLayers() == {}
    assert project.layerTreeRoot().children() == []
    assert project.receivers(project.layersWillBeRemoved) == receivers_before
    main = qgis_iface.mainWindow()
    assert [d for d in main.findChildren(QDockWidget) if isinstance(d, ExplorerDock)] == []
    assert not plugin.dock_action.isChecked()
    # the dock can come back, and unloading with it open also cleans up
    plugin.open_bundle(explorer_bundle)
    assert len(project.mapLayers()) > 0
    plugin.unload()
    flush()
    assert project.mapLayers() == {}
    assert project.layerTreeRoot().children() == []
    assert project.receivers(project.layersWillBeRemoved) == receivers_before
    assert [d for d in main.findChildren(QDockWidget) if isinstance(d, ExplorerDock)] == []
    assert [t for t in main.findChildren(QToolBar)
            if t.objectName() == "segexplainToolbar"] == []


def test_removing_footprint_layer_closes_that_bundle(plugin, explorer_bundle):
    plugin.open_bundle(explorer_bundle)
    dock = plugin.dock
    fp_id = dock.base.layers.footprints.id()
    QgsProject.instance().removeMapLayer(fp_id)
    assert dock.sessions == []
    dock.brush_rect(-1e12, -1e12, 1e12, 1e12)  # nothing open: no error, nothing selected
    assert plugin.iface.messageBar().get_messages(2) == []


def test_vector_ground_truth_opens_as_polygons(plugin, explorer_bundle, tmp_path):
    from qgis.core import (
        QgsFeature,
        QgsGeometry,
        QgsVectorFileWriter,
        QgsVectorLayer,
    )

    copy = tmp_path / "vector_gt.segx"
    shutil.copytree(explorer_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    im = manifest["images"][0]
    a, _b, c, _d, e, f = im["transform"]
    mem = QgsVectorLayer("Polygon", "buildings", "memory")
    mem.setCrs(QgsCoordinateReferenceSystem.fromWkt(im["crs_wkt"]))
    feat = QgsFeature()
    feat.setGeometry(QgsGeometry.fromRect(QgsRectangle(c + 2 * a, f + 6 * e, c + 5 * a,
                                                       f + 2 * e)))
    mem.dataProvider().addFeatures([feat])
    gpkg = tmp_path / "buildings.gpkg"
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    err = QgsVectorFileWriter.writeAsVectorFormatV3(
        mem, str(gpkg), QgsProject.instance().transformContext(), opts)
    assert err[0] == QgsVectorFileWriter.NoError
    im["label"] = str(gpkg)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    plugin.open_bundle(copy)
    assert plugin.iface.messageBar().get_messages(2) == []
    gt = plugin.dock.base.layers.rasters[f"{im['name']}:label"]
    assert isinstance(gt, QgsVectorLayer) and gt.featureCount() == 1
    assert group_of(copy).findLayer(gt.id()) is not None


def test_plugin_never_loads_worker_packages(explorer_bundle):
    """Opening a bundle in the plugin's modules keeps torch & co. out of QGIS's Python."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from qgis.core import QgsApplication\n"
        "app = QgsApplication([], True); app.initQgis()\n"
        "from segexplain.segexplain_qgis import plugin, dock, screenshot, session\n"
        f"s = session.BundleSession({str(explorer_bundle)!r})\n"
        "d = dock.ExplorerDock(None); d.open_bundle(s.key); d.brush_rect(-1e9, -1e9, 1e9, 1e9)\n"
        "bad = [m for m in ('torch', 'sklearn', 'rasterio', 'onnxruntime',\n"
        "                   'segmentation_models_pytorch') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
        "s.close(); d.shutdown()\n"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env=env)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr
