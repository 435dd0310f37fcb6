"""The "Analyze…" and "Estimate new region…" dialogs and the plugin's run actions.

A dialog collects the inputs into the parameters of the Processing algorithm
`segexplain:analyze` or `segexplain:estimate` and runs that algorithm as a background
task (`processing/background.py`), so the dialogs, the toolbox and `qgis_process` build
the worker's command line in one place (`processing/arguments.py`). An input the
algorithm refuses is shown in the dialog and nothing starts. QGIS stays responsive, the
task manager and the dialog show progress (the dialog also stage and log), Cancel stops
the worker and its helpers and leaves no half bundle, errors go to the message bar with
what to do, and the bundle opens in the explorer when the run is done. The dialog can be
closed while the run goes on; the task keeps running and still opens the bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import QgsApplication, QgsProject
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QAction,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..core.bundle.reader import read_manifest
from ..core.engine.records import (
    IOU_CONVENTION_QUESTION,
    IOU_CONVENTION_TEXT,
    describe_convention,
)
from ..core.errors import SegexplainError
from . import inputs, settings
from .input_widgets import ImageryInput, LabelsInput, ModelInput, existing, file_widget
from .processing import arguments as a
from .processing.background import AlgorithmRun
from .settings_dialog import SettingsDialog

BACKEND_TEXT = {"auto": "auto (CUDA if present, else onnxruntime on CPU)",
                "torch": "PyTorch", "onnx": "onnxruntime (CPU)"}


def _choices(combo: QComboBox, keys: list[str], text: dict[str, str], sep: str = "") -> None:
    for key in keys:
        combo.addItem(f"{key}{sep}{text[key]}" if sep else text[key], key)


class RunDialog(QDialog):
    """Common part: output, progress, log, Run / Cancel / Close."""

    command = ""
    title = ""

    def __init__(self, iface: Any, open_bundle: Callable[[str], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent if parent is not None else
                         (iface.mainWindow() if iface is not None else None))
        self.iface = iface
        self.open_bundle = open_bundle
        self.run: AlgorithmRun | None = None
        self.setWindowTitle(f"segexplain — {self.title}")
        self.body = QVBoxLayout()
        self.out_folder = file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                      title="Folder for the bundle")
        self.out_folder.setFilePath(existing(settings.value("out_folder", "")))
        self.out_name = QLineEdit()
        self.out_name.setPlaceholderText("name.segx")
        out = QGroupBox("Output bundle")
        of = QFormLayout(out)
        of.addRow("Folder", self.out_folder)
        of.addRow("Name", self.out_name)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMinimumHeight(90)
        self.buttons = QDialogButtonBox()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.setEnabled(False)
        self.buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.buttons.rejected.connect(self.reject)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        lay = QVBoxLayout(self)
        lay.addLayout(self.body)
        lay.addWidget(out)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addWidget(self.log)
        lay.addWidget(self.buttons)

    @property
    def algorithm_id(self) -> str:
        """The Processing algorithm this dialog runs."""
        return f"segexplain:{self.command}"

    # subclasses: the algorithm's own parameters
    def command_parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def remember(self) -> None:
        """Keep choices for the next dialog (after a successful start)."""

    def parameters(self) -> dict[str, Any]:
        """The algorithm's parameters for the dialog's choices. Raises InputError."""
        folder = self.out_folder.filePath().strip() or self.default_out_folder()
        out = inputs.bundle_out(folder, self.out_name.text() or self.default_name())
        return {**self.command_parameters(), a.OUTPUT: str(out)}

    def default_out_folder(self) -> str:
        return project_folder()

    def default_name(self) -> str:
        return self.command

    def start(self) -> AlgorithmRun | None:
        """Check the inputs and start the algorithm as a background task."""
        if self.run is not None:
            return self.run
        self.log.clear()
        try:
            params = self.parameters()
            out = Path(params[a.OUTPUT])
            run = AlgorithmRun(self.algorithm_id, params, f"segexplain {self.command}: {out.name}",
                               iface=self.iface, on_done=self._done)
            run.feedback.logged.connect(self.log.appendPlainText)
            run.feedback.stageChanged.connect(self._on_stage)
            run.feedback.progressChanged.connect(self._on_progress)
            run.failed.connect(self._on_failed)
            run.ended.connect(self._reset)
            run.start()  # the algorithm checks the parameters here; nothing runs on error
        except SegexplainError as exc:
            self._set_status(str(exc), error=True)
            return None
        self.remember()
        settings.set_value("out_folder", str(out.parent))
        self.run = run
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._set_status(f"running with {settings.worker_python()} …")
        return run

    def cancel(self) -> None:
        """Stop the running worker (its half bundle is removed)."""
        if self.run is not None:
            self._set_status("cancelling …")
            self.run.cancel()

    def _on_stage(self, stage: str) -> None:
        self._set_status(f"{stage} …")

    def _on_progress(self, percent: float) -> None:
        self.progress.setValue(int(percent))

    def _on_failed(self, message: str) -> None:
        self._set_status(message or "cancelled; no bundle was written", error=bool(message))

    def _done(self, results: dict[str, Any]) -> None:
        bundle = results.get("OUTPUT")
        self.progress.setValue(100)
        self._set_status(f"done: {bundle}")
        if bundle and self.open_bundle is not None:
            self.open_bundle(str(bundle))

    def _reset(self) -> None:
        self.run = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _set_status(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color: #b00020;" if error else "")


class AnalyzeDialog(RunDialog):
    """Analyse labelled imagery with a model: the explorer's analysis bundle."""

    command = "analyze"
    title = "Analyze"

    def __init__(self, iface: Any, open_bundle: Callable[[str], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(iface, open_bundle, parent)
        self.imagery = ImageryInput()
        self.labels = LabelsInput(optional=False)
        self.model = ModelInput()
        self.patch = QSpinBox()
        self.patch.setRange(32, 4096)
        self.patch.setSingleStep(32)
        self.patch.setValue(settings.value("patch_size", 256, int))
        self.patch.setSuffix(" px")
        self.stride = QSpinBox()
        self.stride.setRange(0, 4096)
        self.stride.setSingleStep(32)
        self.stride.setSpecialValueText("same as the patch size")
        self.stride.setSuffix(" px")
        self.iou = QComboBox()
        _choices(self.iou, a.IOU, IOU_CONVENTION_TEXT, ": ")
        self.backend = QComboBox()
        _choices(self.backend, a.BACKENDS, BACKEND_TEXT)
        params = QGroupBox("Patches and scoring")
        pf = QFormLayout(params)
        pf.addRow("Patch size", self.patch)
        pf.addRow("Stride", self.stride)
        pf.addRow(IOU_CONVENTION_QUESTION, self.iou)
        pf.addRow("Back end", self.backend)
        for w in (self.imagery, self.labels, self.model, params):
            self.body.addWidget(w)

    def command_parameters(self) -> dict[str, Any]:
        return {**self.imagery.parameters(), **self.labels.parameters(),
                **self.model.parameters(), a.PATCH_SIZE: self.patch.value(),
                a.STRIDE: self.stride.value(),
                a.IOU_CONVENTION: a.IOU.index(self.iou.currentData()),
                a.BACKEND: a.BACKENDS.index(self.backend.currentData())}

    def remember(self) -> None:
        self.model.remember()
        settings.set_value("patch_size", self.patch.value())

    def default_out_folder(self) -> str:
        return self.imagery.hint_folder() or project_folder()


class EstimateDialog(RunDialog):
    """Estimate IoU and novelty of a new region against a reference bundle."""

    command = "estimate"
    title = "Estimate new region"
    FROM_REFERENCE = "Patch size, stride and IoU convention come from the reference."

    def __init__(self, iface: Any, open_bundle: Callable[[str], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(iface, open_bundle, parent)
        self.imagery = ImageryInput()
        self.labels = LabelsInput(optional=True)
        self.reference = file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                     title="Reference analysis bundle (.segx)")
        self.model = ModelInput()
        self.from_reference = QLabel(self.FROM_REFERENCE)
        self.from_reference.setWordWrap(True)
        self.reference.fileChanged.connect(self._reference_changed)
        self.reference.setFilePath(existing(settings.value("reference", "")))
        self.encoder_only = QCheckBox("Encoder only (faster; no prediction, latent-only estimate)")
        self.backend = QComboBox()
        _choices(self.backend, a.BACKENDS, BACKEND_TEXT)
        ref = QGroupBox("Reference (the model's analysed training data)")
        rf = QFormLayout(ref)
        rf.addRow("Bundle", self.reference)
        rf.addRow(self.from_reference)
        opts = QWidget()
        ol = QHBoxLayout(opts)
        ol.setContentsMargins(0, 0, 0, 0)
        ol.addWidget(self.encoder_only)
        ol.addWidget(QLabel("Back end"))
        ol.addWidget(self.backend)
        for w in (self.imagery, self.labels, ref, self.model, opts):
            self.body.addWidget(w)

    def _reference_changed(self, path: str) -> None:
        """Pre-fill the model the reference was made with; show its patch settings."""
        try:
            manifest = read_manifest(path)
        except (SegexplainError, OSError):
            self.from_reference.setText(self.FROM_REFERENCE)
            return
        self.model.show_model(manifest.get("model") or {})
        size, stride = manifest.get("patch_size"), manifest.get("stride")
        iou = manifest.get("iou_convention")
        self.from_reference.setText(
            f"From the reference: patches of {size} px, stride {stride or size} px; "
            f"{IOU_CONVENTION_QUESTION.lower()}: {describe_convention(str(iou))}.")

    def command_parameters(self) -> dict[str, Any]:
        return {**self.imagery.parameters(), **self.labels.parameters(),
                a.REFERENCE: self.reference.filePath().strip(), **self.model.parameters(),
                a.ENCODER_ONLY: self.encoder_only.isChecked(),
                a.BACKEND: a.BACKENDS.index(self.backend.currentData())}

    def remember(self) -> None:
        self.model.remember()
        settings.set_value("reference", self.reference.filePath().strip())

    def default_out_folder(self) -> str:
        return self.imagery.hint_folder() or project_folder()

    def default_name(self) -> str:
        return "estimate"


class RunActions:
    """Menu actions Analyze… / Estimate new region… / Settings… and the Processing provider."""

    def __init__(self, iface: Any, open_bundle: Callable[[str], None] | None, menu: str,
                 icon: Any = None) -> None:
        self.iface = iface
        self.open_bundle = open_bundle
        self.menu = menu
        self.icon = icon
        self.actions: list[QAction] = []
        self.dialogs: dict[str, QDialog] = {}
        self.provider: Any = None

    def init_processing(self) -> None:
        """Register the Processing provider (also called by qgis_process)."""
        if self.provider is None:
            from .processing.provider import SegexplainProvider

            self.provider = SegexplainProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def init_gui(self) -> None:
        """Add the menu entries and the provider."""
        self.init_processing()
        main = self.iface.mainWindow()
        for name, text, slot in (("segexplainAnalyze", "Analyze…", self.show_analyze),
                                 ("segexplainEstimate", "Estimate new region…",
                                  self.show_estimate),
                                 ("segexplainSettings", "Settings…", self.show_settings)):
            action = QAction(text, main) if self.icon is None else QAction(self.icon, text, main)
            action.setObjectName(name)
            action.triggered.connect(slot)
            self.iface.addPluginToRasterMenu(self.menu, action)
            self.actions.append(action)

    def unload(self) -> None:
        """Remove the entries, close the dialogs, unregister the provider."""
        for action in self.actions:
            self.iface.removePluginRasterMenu(self.menu, action)
            action.deleteLater()
        self.actions = []
        for d in self.dialogs.values():
            if isinstance(d, RunDialog) and d.run is not None:
                d.run.cancel()
            d.close()
            d.deleteLater()
        self.dialogs = {}
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    def _show(self, key: str, factory: Callable[[], QDialog]) -> QDialog:
        d = self.dialogs.get(key)
        if d is None:
            d = self.dialogs[key] = factory()
        d.show()
        d.raise_()
        d.activateWindow()
        return d

    def show_analyze(self, *_args: Any) -> QDialog:
        return self._show("analyze", lambda: AnalyzeDialog(self.iface, self.open_bundle))

    def show_estimate(self, *_args: Any) -> QDialog:
        return self._show("estimate", lambda: EstimateDialog(self.iface, self.open_bundle))

    def show_settings(self, *_args: Any) -> QDialog:
        return self._show("settings", lambda: SettingsDialog(self.iface))


def project_folder() -> str:
    """Return the current project's folder ('' when unsaved)."""
    return QgsProject.instance().homePath()
