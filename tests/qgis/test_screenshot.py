"""Headless screenshot of map + dock with a selection made."""

import numpy as np
import pytest
from qgis.PyQt.QtGui import QImage
from segexplain.segexplain_qgis.screenshot import save_screenshot

pytestmark = pytest.mark.qgis


def test_screenshot_renders_map_and_dock_with_selection(dock, qgis_canvas, tmp_path):
    out = save_screenshot(tmp_path / "shots" / "explorer.png", dock, canvas=qgis_canvas,
                          size=(1000, 600))
    s = dock.base
    assert s.selected.any()
    assert sorted(s.layers.footprints.selectedFeatureIds()) == sorted(
        int(f) for f in s.link.fid_of[s.selected])
    img = QImage(str(out))
    assert img.width() >= 1000 and img.height() >= 600
    # map half and dock half are both drawn (not a blank grab)
    for x0, x1 in ((0, img.width() // 3), (2 * img.width() // 3, img.width())):
        colors = {img.pixel(x, y) for x in range(x0, x1, 7) for y in range(0, img.height(), 7)}
        assert len(colors) > 5
    assert np.isfinite(s.summary()[1])
