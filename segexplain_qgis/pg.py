"""pyqtgraph for the explorer: QGIS's own when it has one, else the copy in `ext/`.

Import pyqtgraph through this module, never directly:

    from .pg import pg                      # the pyqtgraph package
    from .pg import QtCore, QtGui, QtWidgets

QGIS installs (Windows OSGeo4W, macOS) often lack pyqtgraph; the plugin zip carries a
copy under `segexplain/ext/pyqtgraph`, put on the END of sys.path only when
`import pyqtgraph` fails, so an installed pyqtgraph always wins.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

EXT = Path(__file__).resolve().parent.parent / "ext"


def load() -> ModuleType:
    """Import pyqtgraph (installed, else the vendored copy) and return it."""
    try:
        return importlib.import_module("pyqtgraph")
    except ImportError:
        if not (EXT / "pyqtgraph" / "__init__.py").is_file():
            raise
        if str(EXT) not in sys.path:
            sys.path.append(str(EXT))
        return importlib.import_module("pyqtgraph")


pg = load()
_qt = importlib.import_module(f"{pg.__name__}.Qt")
QtCore = _qt.QtCore
QtGui = _qt.QtGui
QtWidgets = _qt.QtWidgets
VENDORED = Path(pg.__file__ or "").resolve().parent.parent == EXT.resolve()

__all__ = ["pg", "QtCore", "QtGui", "QtWidgets", "VENDORED", "load"]
