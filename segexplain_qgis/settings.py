"""Where the worker runs: the Python of the core command line, stored in QgsSettings.

The plugin never imports torch: every run starts `PY -m segexplain.core.cli ...` in a
separate Python environment. The default PY, in this order:

1. the environment variable SEGEXPLAIN_PYTHON (an explicit choice wins over a guess);
2. a `.venv` inside the plugin folder (a checkout: `make setup` creates it there) or
   next to it;
3. `python3` (`python` on Windows) from PATH.

A value saved in Settings (QgsSettings key `segexplain/worker_python`) overrides them.
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

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtGui import QFontDatabase
from qgis.PyQt.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

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


class SettingsDialog(QDialog):
    """The worker Python, and a check of what it can run (`check-env`)."""

    def __init__(self, iface: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else
                         (iface.mainWindow() if iface is not None else None))
        from qgis.gui import QgsFileWidget

        self.iface = iface
        self.task: Any = None
        self.report: dict[str, Any] | None = None
        self.setWindowTitle("segexplain — Settings")
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python.setDialogTitle("Python of the worker environment")
        saved = QgsSettings().value(KEY_PYTHON, "", type=str)
        self.python.setFilePath(saved or default_python())
        self.default_button = QPushButton("Use default")
        self.default_button.setToolTip(f"default: {default_python()}")
        self.default_button.clicked.connect(
            lambda: self.python.setFilePath(default_python()))
        self.check_button = QPushButton("Check environment")
        self.check_button.clicked.connect(self.check)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setMinimumSize(560, 260)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.output.setPlaceholderText(
            "Check environment runs PY -m segexplain.core.cli check-env --json in the chosen "
            "Python and shows what it can run and what to install.")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Close)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.python, 1)
        row.addWidget(self.default_button)
        form = QFormLayout()
        form.addRow("Worker Python", row)
        form.addRow("", QLabel("The analysis runs in this Python (torch, onnxruntime, "
                               "rasterio, scikit-learn), never inside QGIS."))
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.check_button)
        lay.addWidget(self.output)
        lay.addWidget(buttons)

    def save(self) -> None:
        """Store the chosen Python (the default when it equals the default)."""
        chosen = self.python.filePath().strip()
        set_worker_python("" if chosen == default_python() else chosen)
        self.accept()

    def check(self) -> Any:
        """Run check-env in the chosen Python as a background task; show the report."""
        from .worker import CoreTask

        if self.task is not None:
            return self.task
        py = self.python.filePath().strip() or default_python()
        self.output.setPlainText(f"checking {py} …")
        self.check_button.setEnabled(False)
        task = CoreTask(f"segexplain check-env ({py})", "check-env", ["--json"], python=py)
        task.succeeded.connect(self._show_report)
        task.failed.connect(self._show_failure)
        task.taskCompleted.connect(self._reset)
        task.taskTerminated.connect(self._reset)
        self.task = task
        QgsApplication.taskManager().addTask(task)
        return task

    def _show_report(self, rep: dict) -> None:
        from ..core.commands.env_report import format_report

        self.report = rep
        self.output.setPlainText(format_report(rep))

    def _show_failure(self, message: str) -> None:
        self.output.setPlainText(f"The worker Python cannot run segexplain:\n{message}"
                                 if message else "check cancelled")

    def _reset(self) -> None:
        self.task = None
        self.check_button.setEnabled(True)
