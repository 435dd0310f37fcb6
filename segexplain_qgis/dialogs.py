"""The "Analyze…" and "Estimate new region…" dialogs and the plugin's run actions.

A dialog collects the inputs, checks them (one-line errors in the dialog), and starts
the core command line as a `CoreTask`: QGIS stays responsive, the task manager shows the
progress, the dialog shows progress, stage and log, Cancel stops the worker, and the
bundle opens in the explorer when the run is done. The dialog can be closed while the
run goes on; the task keeps running and still opens the bundle.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication, QgsMapLayerProxyModel, QgsProject
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
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
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from ..core.bundle.reader import read_manifest
from ..core.engine.records import IOU_CONVENTION_QUESTION, IOU_CONVENTION_TEXT
from ..core.errors import InputError, SegexplainError
from . import inputs, settings
from .settings_dialog import SettingsDialog
from .worker import CoreTask

IOU_CHOICES = tuple((key, f"{key}: {text}") for key, text in IOU_CONVENTION_TEXT.items())
BACKENDS = (("auto", "auto (CUDA if present, else onnxruntime on CPU)"),
            ("torch", "PyTorch"), ("onnx", "onnxruntime (CPU)"))


def _filter(name: str) -> Any:
    """Return a layer-combo filter on QGIS 3 (QgsMapLayerProxyModel) and 4 (Qgis.LayerFilter)."""
    holder = getattr(Qgis, "LayerFilter", None)
    if holder is not None and hasattr(holder, name):
        return getattr(holder, name)
    return getattr(QgsMapLayerProxyModel.Filter, name, getattr(QgsMapLayerProxyModel, name))


def _existing(path: str) -> str:
    """Return a remembered path when it still exists, else ''."""
    return path if path and Path(path).exists() else ""


def _file_widget(mode: Any, filt: str = "", title: str = "") -> QgsFileWidget:
    w = QgsFileWidget()
    w.setStorageMode(mode)
    if filt:
        w.setFilter(filt)
    if title:
        w.setDialogTitle(title)
    return w


class ImageryInput(QGroupBox):
    """Imagery: a raster layer of the project, image files, or a folder."""

    MODES = ("Raster layer", "Image files", "Folder (Inria images/ + gt/, or pairs)")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Imagery", parent)
        self.mode = QComboBox()
        self.mode.addItems(self.MODES)
        self.layer = QgsMapLayerComboBox()
        self.layer.setFilters(_filter("RasterLayer"))
        self.files = _file_widget(QgsFileWidget.StorageMode.GetMultipleFiles,
                                  "GeoTIFF (*.tif *.tiff);;All files (*)", "Image files")
        self.folder = _file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                   title="Imagery folder")
        self.stack = QStackedWidget()
        for w in (self.layer, self.files, self.folder):
            self.stack.addWidget(w)
        self.mode.currentIndexChanged.connect(self.stack.setCurrentIndex)
        form = QFormLayout(self)
        form.addRow("Source", self.mode)
        form.addRow("", self.stack)

    def spec(self) -> tuple[list[Path], Path | None]:
        """Return (image files, folder) for `inputs.data_args`."""
        i = self.mode.currentIndex()
        if i == 0:
            return [inputs.raster_layer_file(self.layer.currentLayer())], None
        if i == 1:
            return [Path(p) for p in QgsFileWidget.splitFilePaths(self.files.filePath())], None
        text = self.folder.filePath().strip()
        if not text:
            raise InputError("no imagery folder chosen; pick one or switch the imagery source")
        return [], Path(text)

    def hint_folder(self) -> str:
        """Return a folder next to the imagery, for the default output place."""
        try:
            images, folder = self.spec()
        except SegexplainError:
            return ""
        if folder is not None:
            return str(folder.parent)
        return str(images[0].parent) if images else ""


class LabelsInput(QGroupBox):
    """Labels: found with the imagery, a raster / vector layer, files, or none."""

    def __init__(self, optional: bool, parent: QWidget | None = None) -> None:
        super().__init__("Labels (ground truth)" + (" — optional" if optional else ""), parent)
        self.modes = (["None (no ground truth)"] if optional else []) + [
            "Found with the imagery (gt/, labels/ or <name>_label.*)",
            "Raster layer", "Vector layer (building footprints)", "Label files"]
        self.mode = QComboBox()
        self.mode.addItems(self.modes)
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(_filter("RasterLayer"))
        self.vector = QgsMapLayerComboBox()
        self.vector.setFilters(_filter("PolygonLayer"))
        self.files = _file_widget(QgsFileWidget.StorageMode.GetMultipleFiles,
                                  "Labels (*.tif *.tiff *.gpkg *.geojson *.shp);;All files (*)",
                                  "Label files")
        self.stack = QStackedWidget()
        for w in ([QWidget()] if optional else []) + [QWidget(), self.raster, self.vector,
                                                        self.files]:
            self.stack.addWidget(w)
        self.mode.currentIndexChanged.connect(self.stack.setCurrentIndex)
        form = QFormLayout(self)
        form.addRow("Source", self.mode)
        form.addRow("", self.stack)

    def spec(self, staging: Callable[[], Path]) -> list[Path]:
        """Return label files (empty: none, or found by the core next to the images)."""
        text = self.mode.currentText()
        if text.startswith(("None", "Found")):
            return []
        if text == "Raster layer":
            return [inputs.raster_layer_file(self.raster.currentLayer())]
        if text.startswith("Vector layer"):
            return [inputs.vector_layer_file(self.vector.currentLayer(), staging())]
        paths = [Path(p) for p in QgsFileWidget.splitFilePaths(self.files.filePath())]
        if not paths:
            raise InputError("no label files chosen; pick them or choose another label source")
        return paths


class ModelInput(QGroupBox):
    """Model: a model folder, a checkpoint with its architecture, or an ONNX file."""

    KINDS = (("folder", "Model folder (segexplain train / smp save_pretrained)"),
             ("checkpoint", "Checkpoint (.pt / .pth / .safetensors) + architecture"),
             ("onnx", "ONNX file (exported with segexplain export-onnx)"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.kind = QComboBox()
        for key, text in self.KINDS:
            self.kind.addItem(text, key)
        self.folder = _file_widget(QgsFileWidget.StorageMode.GetDirectory, title="Model folder")
        self.file = _file_widget(QgsFileWidget.StorageMode.GetFile,
                                 "Models (*.pt *.pth *.ckpt *.safetensors *.onnx);;"
                                 "All files (*)", "Model file")
        self.path_stack = QStackedWidget()
        self.path_stack.addWidget(self.folder)
        self.path_stack.addWidget(self.file)
        self.arch = QComboBox()
        self.arch.addItems(inputs.ARCHS)
        self.encoder = QComboBox()
        self.encoder.setEditable(True)
        self.encoder.addItems(["resnet34", "resnet18", "resnet50", "efficientnet-b0",
                               "mobilenet_v2"])
        form = QFormLayout(self)
        form.addRow("Kind", self.kind)
        form.addRow("Path", self.path_stack)
        form.addRow("Architecture", self.arch)
        form.addRow("Encoder", self.encoder)
        self.kind.currentIndexChanged.connect(self._kind_changed)
        self.folder.setFilePath(_existing(settings.value("model_folder", "")))
        self._kind_changed()

    def _kind_changed(self, *_args: Any) -> None:
        key = self.kind.currentData()
        self.path_stack.setCurrentIndex(0 if key == "folder" else 1)
        self.arch.setEnabled(key == "checkpoint")
        self.encoder.setEnabled(key == "checkpoint")

    def args(self) -> list[str]:
        """Return the `--model ...` arguments."""
        key = self.kind.currentData()
        path = (self.folder if key == "folder" else self.file).filePath().strip()
        if key == "folder" and path:
            settings.set_value("model_folder", path)
        return inputs.model_args(key, path, arch=self.arch.currentText(),
                                 encoder=self.encoder.currentText().strip())


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
        self.task: CoreTask | None = None
        self.setWindowTitle(f"segexplain — {self.title}")
        self.body = QVBoxLayout()
        self.out_folder = _file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                       title="Folder for the bundle")
        self.out_folder.setFilePath(_existing(settings.value("out_folder", "")))
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
        self._staging: Path | None = None

    # subclasses: the command's own arguments
    def command_args(self, staging: Callable[[], Path]) -> list[str]:
        raise NotImplementedError

    def _staging_dir(self) -> Path:
        if self._staging is None:
            self._staging = inputs.new_staging()
        return self._staging

    def build(self) -> tuple[list[str], Path]:
        """Check the inputs; return (arguments, bundle path). Raises InputError."""
        folder = self.out_folder.filePath().strip() or self.default_out_folder()
        out = inputs.bundle_out(folder, self.out_name.text() or self.default_name())
        args = self.command_args(self._staging_dir) + ["--out", str(out)]
        return args, out

    def default_out_folder(self) -> str:
        return project_folder()

    def default_name(self) -> str:
        return self.command

    def start(self) -> CoreTask | None:
        """Check the inputs and start the run as a background task."""
        if self.task is not None:
            return self.task
        self._staging = None
        try:
            args, out = self.build()
        except SegexplainError as exc:
            self._cleanup_staging()
            self._set_status(str(exc), error=True)
            return None
        settings.set_value("out_folder", str(out.parent))
        self.log.clear()
        self.log.appendPlainText(f"{self.command} {' '.join(args)}")
        task = CoreTask(f"segexplain {self.command}: {out.name}", self.command, args,
                        out=out, on_done=self._done, iface=self.iface,
                        cleanup=[self._staging] if self._staging else [])
        task.workerEvent.connect(self._on_event)
        task.progressChanged.connect(lambda p: self.progress.setValue(int(p)))
        task.failed.connect(self._on_failed)
        task.taskCompleted.connect(self._reset)
        task.taskTerminated.connect(self._reset)
        self.task = task
        self.progress.setValue(0)
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self._set_status(f"running with {task.python} …")
        QgsApplication.taskManager().addTask(task)
        return task

    def cancel(self) -> None:
        """Stop the running worker (its half bundle is removed)."""
        if self.task is not None:
            self._set_status("cancelling …")
            self.task.cancel()

    def _cleanup_staging(self) -> None:
        if self._staging is not None:
            import shutil

            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def _on_event(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "stage":
            self._set_status(f"{event.get('stage')} …")
        elif kind == "log":
            self.log.appendPlainText(str(event.get("message", "")))
        elif kind == "error":
            self.log.appendPlainText(f"{event.get('error')}: {event.get('message')}")

    def _on_failed(self, message: str) -> None:
        self._set_status(message or "cancelled; no bundle was written", error=bool(message))

    def _done(self, result: dict) -> None:
        bundle = result.get("bundle") or result.get("out")
        self.progress.setValue(100)
        self._set_status(f"done: {bundle}")
        if bundle and self.open_bundle is not None and result.get("kind"):
            self.open_bundle(str(bundle))

    def _reset(self) -> None:
        self.task = None
        self._staging = None
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
        for key, text in IOU_CHOICES:
            self.iou.addItem(text, key)
        self.backend = QComboBox()
        for key, text in BACKENDS:
            self.backend.addItem(text, key)
        params = QGroupBox("Patches and scoring")
        pf = QFormLayout(params)
        pf.addRow("Patch size", self.patch)
        pf.addRow("Stride", self.stride)
        pf.addRow(IOU_CONVENTION_QUESTION, self.iou)
        pf.addRow("Back end", self.backend)
        for w in (self.imagery, self.labels, self.model, params):
            self.body.addWidget(w)

    def command_args(self, staging: Callable[[], Path]) -> list[str]:
        images, folder = self.imagery.spec()
        labels = self.labels.spec(staging)
        data = inputs.data_args(images=images, folder=folder, labels=labels,
                                staging=staging() if len(images) > 1 else None)
        args = data.args + self.model.args()
        if "--backend" not in args:
            args += ["--backend", self.backend.currentData()]
        args += ["--patch-size", str(self.patch.value()),
                 "--iou-convention", self.iou.currentData()]
        if self.stride.value():
            if self.stride.value() > self.patch.value():
                raise InputError(f"stride {self.stride.value()} px is larger than the patch "
                                 f"size {self.patch.value()} px: patches would leave gaps")
            args += ["--stride", str(self.stride.value())]
        settings.set_value("patch_size", self.patch.value())
        return args

    def default_out_folder(self) -> str:
        return self.imagery.hint_folder() or project_folder()


class EstimateDialog(RunDialog):
    """Estimate IoU and novelty of a new region against a reference bundle."""

    command = "estimate"
    title = "Estimate new region"

    def __init__(self, iface: Any, open_bundle: Callable[[str], None] | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(iface, open_bundle, parent)
        self.imagery = ImageryInput()
        self.labels = LabelsInput(optional=True)
        self.reference = _file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                      title="Reference analysis bundle (.segx)")
        self.model = ModelInput()
        self.reference.fileChanged.connect(self._reference_changed)
        self.reference.setFilePath(_existing(settings.value("reference", "")))
        self.encoder_only = QCheckBox("Encoder only (faster; no prediction, latent-only estimate)")
        self.backend = QComboBox()
        for key, text in BACKENDS:
            self.backend.addItem(text, key)
        ref = QGroupBox("Reference (the model's analysed training data)")
        rf = QFormLayout(ref)
        rf.addRow("Bundle", self.reference)
        rf.addRow(QLabel("Patch size, stride and IoU convention come from the reference."))
        opts = QWidget()
        ol = QHBoxLayout(opts)
        ol.setContentsMargins(0, 0, 0, 0)
        ol.addWidget(self.encoder_only)
        ol.addWidget(QLabel("Back end"))
        ol.addWidget(self.backend)
        for w in (self.imagery, self.labels, ref, self.model, opts):
            self.body.addWidget(w)

    def _reference_changed(self, path: str) -> None:
        """Pre-fill the model with the one the reference bundle was made with."""
        try:
            manifest = read_manifest(path)
        except (SegexplainError, OSError):
            return
        model = Path(str((manifest.get("model") or {}).get("path") or ""))
        if model.is_dir():
            self.model.kind.setCurrentIndex(0)
            self.model.folder.setFilePath(str(model))
        elif model.is_file():
            self.model.kind.setCurrentIndex(2 if model.suffix.lower() == ".onnx" else 1)
            self.model.file.setFilePath(str(model))

    def command_args(self, staging: Callable[[], Path]) -> list[str]:
        images, folder = self.imagery.spec()
        labels = self.labels.spec(staging)
        ref = self.reference.filePath().strip()
        if not ref or not (Path(ref) / "manifest.json").is_file():
            raise InputError(f"reference {ref or '(none)'}: not a finished bundle (no "
                             "manifest.json); pick the NAME.segx folder written by Analyze")
        settings.set_value("reference", ref)
        data = inputs.data_args(images=images, folder=folder, labels=labels,
                                staging=staging() if len(images) > 1 else None)
        args = data.args + ["--reference", ref] + self.model.args()
        if "--backend" not in args:
            args += ["--backend", self.backend.currentData()]
        if self.encoder_only.isChecked():
            args.append("--encoder-only")
        return args

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
            a = QAction(text, main) if self.icon is None else QAction(self.icon, text, main)
            a.setObjectName(name)
            a.triggered.connect(slot)
            self.iface.addPluginToRasterMenu(self.menu, a)
            self.actions.append(a)

    def unload(self) -> None:
        """Remove the entries, close the dialogs, unregister the provider."""
        for a in self.actions:
            self.iface.removePluginRasterMenu(self.menu, a)
            a.deleteLater()
        self.actions = []
        for d in self.dialogs.values():
            if isinstance(d, RunDialog) and d.task is not None:
                d.task.cancel()
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
