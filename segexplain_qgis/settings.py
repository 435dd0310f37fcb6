"""Where the worker runs: the Python of the core command line, stored in QgsSettings.

The plugin never imports torch: every run starts `PY -m segexplain.core.cli ...` in a
separate Python environment. The default PY, in this order:

1. the environment variable SEGEXPLAIN_PYTHON (an explicit choice wins over a guess);
2. a `.venv` inside the plugin folder (a checkout: `make setup` creates it there) or
   next to it;
3. `python3` (`python` on Windows) from PATH.

A value saved in Settings (QgsSettings key `segexplain/worker_python`) overrides them;
`settings_dialog` is where the user picks it.
The worker gets PYTHONPATH = the folder that contains the plugin folder when that
folder is named `segexplain` (an installed plugin), so `segexplain.core` imports from the
plugin's own files; a checkout under another name relies on the venv's `segexplain`
link (scripts/setup.sh).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qgis.core import QgsSettings

PREFIX = "segexplain/"
KEY_PYTHON = PREFIX + "worker_python"
PACKAGE = "segexplain"

#: Variables of QGIS's own Python that must not leak into the worker's Python.
_DROP_ENV = ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP", "PYTHONEXECUTABLE",
             "__PYVENV_LAUNCHER__", "VIRTUAL_ENV")


def plugin_dir() -> Path:
    """Return the plugin folder (the repository root in a checkout)."""
    return Path(__file__).resolve().parent.parent


def venv_python(venv: Path) -> Path:
    """Return the interpreter of a virtual environment folder on this platform."""
    if sys.platform.startswith("win"):
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def default_python(folder: Path | None = None,
                   environ: Mapping[str, str] | None = None) -> str:
    """Return the worker Python when nothing is saved in Settings (see the module docstring)."""
    env = os.environ if environ is None else environ
    explicit = env.get("SEGEXPLAIN_PYTHON", "").strip()
    if explicit:
        return explicit
    folder = folder or plugin_dir()
    for venv in (folder / ".venv", folder.parent / ".venv"):
        py = venv_python(venv)
        if py.is_file():
            return str(py)
    name = "python" if sys.platform.startswith("win") else "python3"
    return shutil.which(name) or name


def worker_python() -> str:
    """Return the configured worker Python (Settings), else the default."""
    saved = QgsSettings().value(KEY_PYTHON, "", type=str)
    return saved.strip() if saved and saved.strip() else default_python()


def set_worker_python(path: str | None) -> None:
    """Save the worker Python; an empty value goes back to the default."""
    s = QgsSettings()
    if path and path.strip():
        s.setValue(KEY_PYTHON, path.strip())
    else:
        s.remove(KEY_PYTHON)


def worker_pythonpath(folder: Path | None = None) -> str | None:
    """Return the PYTHONPATH that makes `segexplain.core` import from the plugin's own files."""
    folder = folder or plugin_dir()
    return str(folder.parent) if folder.name == PACKAGE else None


def worker_env(folder: Path | None = None,
               base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of the worker: QGIS's Python variables removed, PYTHONPATH set."""
    env = {k: v for k, v in (os.environ if base is None else base).items()
           if k not in _DROP_ENV}
    path = worker_pythonpath(folder)
    if path:
        env["PYTHONPATH"] = path
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def value(key: str, default: Any, type_: type = str) -> Any:
    """Return a remembered dialog value (`segexplain/<key>`)."""
    return QgsSettings().value(PREFIX + key, default, type=type_)


def set_value(key: str, val: Any) -> None:
    """Remember a dialog value (`segexplain/<key>`)."""
    QgsSettings().setValue(PREFIX + key, val)
