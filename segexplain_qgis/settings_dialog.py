"""Settings dialog: pick the worker Python and check what it can run (`check-env`)."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
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

from .settings import default_python, set_worker_python, worker_python
from .worker import CoreTask


class SettingsDialog(QDialog):
    """The worker Python, and a check of what it can run (`check-env`)."""

    def __init__(self, iface: Any = None, parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else
                         (iface.mainWindow() if iface is not None else None))
        from qgis.gui import QgsFileWidget

        self.iface = iface
        self.task: CoreTask | None = None
        self.report: dict[str, Any] | None = None
        self.setWindowTitle("segexplain — Settings")
        self.python = QgsFileWidget()
        self.python.setStorageMode(QgsFileWidget.StorageMode.GetFile)
        self.python.setDialogTitle("Python of the worker environment")
        self.python.setFilePath(worker_python())
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

    def check(self) -> CoreTask:
        """Run check-env in the chosen Python as a background task; show the report."""
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

    def _show_report(self, rep: dict[str, Any]) -> None:
        from ..core.commands.env_report import format_report

        self.report = rep
        self.output.setPlainText(format_report(rep))

    def _show_failure(self, message: str) -> None:
        self.output.setPlainText(f"The worker Python cannot run segexplain:\n{message}"
                                 if message else "check cancelled")

    def _reset(self) -> None:
        self.task = None
        self.check_button.setEnabled(True)
