"""QGIS desktop session for the demo: the plugin, both bundles and the explorer dock.

Two ways in:
- headless (`make demo` without a display): `python demo/qgis_session.py REF NEW OUT`
  starts the real QGIS desktop (`qgis --code` this file) under the current X server
  (xvfb-run), with a throw-away profile where the plugin is enabled; inside QGIS the file
  opens the bundles, makes a selection, saves screenshots of the main window to OUT and
  quits;
- with a display, `qgis --code demo/qgis_session.py` with SEGEXPLAIN_DEMO_BUNDLES set opens
  the bundles and leaves QGIS to the user.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

TIMEOUT_S = 180


def launch(ref: Path, new: Path, out: Path) -> int:
    """Start QGIS with a temporary profile that has the plugin enabled; wait for it."""
    script = Path(sys.argv[0]).resolve()
    root = script.parents[1]
    with tempfile.TemporaryDirectory(prefix="segexplain-qgis-") as tmp:
        profile = Path(tmp) / "profiles" / "default"
        plugins = profile / "python" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "segexplain").symlink_to(root, target_is_directory=True)
        ini = profile / "QGIS" / "QGIS3.ini"
        ini.parent.mkdir(parents=True)
        ini.write_text("[PythonPlugins]\nsegexplain=true\n\n[qgis]\ncheckVersion=false\n"
                       "showTips322=false\n\n[core]\nlocale\\overrideFlag=true\n"
                       "locale\\userLocale=en_US\n", encoding="utf-8")
        env = dict(os.environ, SEGEXPLAIN_DEMO_BUNDLES=f"{ref}{os.pathsep}{new}",
                   SEGEXPLAIN_DEMO_OUT=str(out), SEGEXPLAIN_DEMO_QUIT="1")
        env.pop("QT_QPA_PLATFORM", None)  # the real desktop, on the X server
        cmd = ["qgis", "--nologo", "--noversioncheck", "--profiles-path", tmp,
               "--code", str(script)]
        try:
            return subprocess.run(cmd, env=env, timeout=TIMEOUT_S).returncode
        except subprocess.TimeoutExpired:
            print(f"qgis_session: QGIS did not finish within {TIMEOUT_S} s", file=sys.stderr)
            return 1


def inside_qgis() -> None:
    """Runs inside QGIS (`--code`): open the bundles, screenshot, maybe quit."""
    import qgis.utils
    from qgis.core import QgsProject
    from qgis.PyQt.QtCore import Qt, QTimer
    from qgis.PyQt.QtWidgets import QDockWidget

    iface = qgis.utils.iface
    bundles = [p for p in os.environ.get("SEGEXPLAIN_DEMO_BUNDLES", "").split(os.pathsep) if p]
    out = Path(os.environ.get("SEGEXPLAIN_DEMO_OUT", "."))
    quit_after = os.environ.get("SEGEXPLAIN_DEMO_QUIT") == "1"

    def finish(code: int) -> None:
        if quit_after:
            QgsProject.instance().setDirty(False)
            os._exit(code)  # QGIS's own exit asks questions; the screenshots are saved

    state: dict = {}

    def fail(exc: Exception) -> None:
        print(f"qgis_session: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finish(1)

    def open_all() -> None:
        try:
            plugin = qgis.utils.plugins.get("segexplain")
            if plugin is None:
                raise RuntimeError("the segexplain plugin is not loaded in this QGIS")
            from segexplain.segexplain_qgis.screenshot import select_low_iou

            win = iface.mainWindow()
            for name in ("Browser", "Browser2"):
                panel = win.findChild(QDockWidget, name)
                if panel is not None:
                    panel.hide()
            win.showMaximized()
            for b in bundles:
                plugin.open_bundle(b)
            state["dock"] = plugin.ensure_dock()
            select_low_iou(state["dock"])  # selects and zooms the map to those patches
            if quit_after:
                QTimer.singleShot(2500, shoot)
        except Exception as exc:  # report and leave: a hung demo helps nobody
            fail(exc)

    def shoot() -> None:
        try:
            from segexplain.segexplain_qgis.screenshot import save_screenshot

            dock, win = state["dock"], iface.mainWindow()
            shot = save_screenshot(out / "explorer-selection.png", dock, iface=iface,
                                   main_window=win)
            print(f"wrote {shot}", flush=True)
            if len(bundles) > 1:
                dock.set_color_by("novelty")
                shot = save_screenshot(out / "explorer-novelty.png", dock, iface=iface,
                                       main_window=win, select=False)
                print(f"wrote {shot}", flush=True)
                dock.tabs.setCurrentWidget(dock.region)  # interval, coverage, leave-one-out
                # room for the table: a wider dock, the tabs taller than the scatter
                win.resizeDocks([dock], [820], Qt.Orientation.Horizontal)
                dock.split.setSizes([260, 640])
                shot = save_screenshot(out / "explorer-region.png", dock, iface=iface,
                                       main_window=win, select=False)
                print(f"wrote {shot}", flush=True)
            finish(0)
        except Exception as exc:
            fail(exc)

    QTimer.singleShot(3000, open_all)


if __name__ == "__main__" and len(sys.argv) == 4 and "SEGEXPLAIN_DEMO_QUIT" not in os.environ:
    sys.exit(launch(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
else:  # executed by `qgis --code`
    inside_qgis()
