"""The plugin zip: built, validated, installed into a fresh profile and loaded by QGIS."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.qgis
ROOT = Path(__file__).resolve().parents[2]


def _package_module():
    spec = importlib.util.spec_from_file_location("segexplain_package",
                                                  ROOT / "scripts" / "package.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    pkg = _package_module()
    return pkg.build(tmp_path_factory.mktemp("dist"))


def test_zip_layout_and_check(plugin_zip):
    pkg = _package_module()
    names = zipfile.ZipFile(plugin_zip).namelist()
    assert plugin_zip.name == f"segexplain-{pkg.version()}.zip"
    assert {n.split("/", 1)[0] for n in names} == {"segexplain"}
    for required in ("segexplain/metadata.txt", "segexplain/resources_rc.py",
                     "segexplain/core/cli.py", "segexplain/core/commands/check_env.py",
                     "segexplain/segexplain_qgis/worker.py",
                     "segexplain/segexplain_qgis/processing/provider.py",
                     "segexplain/ext/pyqtgraph/__init__.py", "segexplain/requirements.txt"):
        assert required in names, required
    assert not [n for n in names if n.split("/")[1] in ("tests", "bench", "demo", "scripts")
                or "__pycache__" in n or n.endswith(".pyc")]
    assert not [n for n in names if n.startswith("segexplain/ext/pyqtgraph/examples/")]
    assert pkg.check(plugin_zip) == []


def test_check_rejects_bad_metadata_and_pickle(plugin_zip, tmp_path):
    pkg = _package_module()
    bad = tmp_path / f"segexplain-{pkg.version()}.zip"
    with zipfile.ZipFile(plugin_zip) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "segexplain/metadata.txt":
                data = b"\n".join(ln for ln in data.splitlines()
                                  if not ln.startswith((b"email=", b"tracker=")))
            dst.writestr(info, data)
        dst.writestr("segexplain/core/sneaky.py",
                     "import pickle\n\n\ndef load(b):\n    return pickle.loads(b)\n")
        dst.writestr("segexplain/tests/test_x.py", "x = 1\n")
    problems = "\n".join(pkg.check(bad))
    assert "'email'" in problems and "'tracker'" in problems
    assert "B301" in problems or "B403" in problems
    assert "development file in the zip: segexplain/tests/test_x.py" in problems


LOADER = textwrap.dedent("""
    import importlib.abc, importlib.machinery, json, sys
    plugins, hide = sys.argv[1], sys.argv[2] == "hide"

    class HideSystemPyqtgraph(importlib.abc.MetaPathFinder):
        # pyqtgraph only from paths outside site/dist-packages: QGIS without pyqtgraph
        def find_spec(self, name, path=None, target=None):
            if name != "pyqtgraph":
                return None
            paths = [p for p in sys.path if "-packages" not in p]
            spec = importlib.machinery.PathFinder.find_spec(name, paths)
            if spec is None:
                raise ModuleNotFoundError("No module named 'pyqtgraph'", name=name)
            return spec

    if hide:
        sys.meta_path.insert(0, HideSystemPyqtgraph())
    sys.path.insert(0, plugins)
    from qgis.core import QgsApplication
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtWidgets import QMainWindow
    from pytest_qgis.mock_qgis_classes import MockMessageBar
    from pytest_qgis.qgis_interface import QgisInterface
    import qgis.utils
    app = QgsApplication([], True)
    app.initQgis()
    main = QMainWindow()
    canvas = QgsMapCanvas(main)
    qgis.utils.iface = QgisInterface(canvas, MockMessageBar(), main)
    qgis.utils.plugin_paths = [plugins]
    assert qgis.utils.loadPlugin("segexplain"), "loadPlugin failed"
    assert qgis.utils.startPlugin("segexplain"), "startPlugin failed"
    plugin = qgis.utils.plugins["segexplain"]
    import segexplain
    from segexplain.segexplain_qgis import pg
    plugin.ensure_dock()
    reg = QgsApplication.processingRegistry()
    facts = {
        "plugin_file": segexplain.__file__,
        "pyqtgraph_file": pg.pg.__file__, "vendored": pg.VENDORED,
        "actions": sorted(a.objectName() for a in main.findChildren(type(plugin.runs.actions[0]))
                          if a.objectName().startswith("segexplain")),
        "algorithms": sorted(a.id() for a in reg.algorithms() if a.provider()
                             and a.provider().id() == "segexplain"),
        "dock": plugin.dock is not None,
    }
    plugin.unload()  # what QGIS calls on unload (qgis.utils.unloadPlugin also drops modules)
    facts["after_unload"] = sorted(a.id() for a in reg.algorithms() if a.provider()
                                   and a.provider().id() == "segexplain")
    print("FACTS " + json.dumps(facts))
    app.exitQgis()
""")


@pytest.mark.parametrize("hide", [False, True], ids=["qgis-pyqtgraph", "vendored-pyqtgraph"])
def test_zip_installs_into_fresh_profile_and_loads(plugin_zip, tmp_path, hide):
    plugins = tmp_path / "profile" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    script = tmp_path / "load.py"
    script.write_text(LOADER)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    # the profile's folder comes first on sys.path: `segexplain` imports from the zip's copy
    cmd = [sys.executable, str(script), str(plugins), "hide" if hide else "show"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("FACTS ")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    facts = json.loads(line[0][6:])
    assert Path(facts["plugin_file"]).parent == plugins / "segexplain"
    assert facts["vendored"] is hide
    if hide:
        assert Path(facts["pyqtgraph_file"]).is_relative_to(plugins / "segexplain" / "ext")
    assert {"segexplainAnalyze", "segexplainEstimate", "segexplainSettings"} <= set(
        facts["actions"])
    assert facts["algorithms"] == ["segexplain:analyze", "segexplain:estimate",
                                   "segexplain:exporttasks"]
    assert facts["dock"] and facts["after_unload"] == []
