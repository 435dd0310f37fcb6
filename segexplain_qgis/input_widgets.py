"""The run dialogs' input groups: imagery, labels, model, each as Processing parameters.

Every group turns what the user picked into parameters of the segexplain algorithms
(names in `processing/arguments.py`): a layer goes by its id, files and folders by
path. The algorithms check them and build the worker's command line, for the dialogs
as for the toolbox and `qgis_process`. A group raises InputError only for a choice
left empty that the parameters cannot express (no files picked, no folder chosen).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMapLayerProxyModel
from qgis.gui import QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QGroupBox, QStackedWidget, QWidget

from ..core.errors import InputError, SegexplainError
from . import inputs, settings
from .processing import arguments as a


def layer_filter(name: str) -> Any:
    """Return a layer-combo filter on QGIS 3 (QgsMapLayerProxyModel) and 4 (Qgis.LayerFilter)."""
    holder = getattr(Qgis, "LayerFilter", None)
    if holder is not None and hasattr(holder, name):
        return getattr(holder, name)
    return getattr(QgsMapLayerProxyModel.Filter, name, getattr(QgsMapLayerProxyModel, name))


def existing(path: str) -> str:
    """Return a remembered path when it still exists, else ''."""
    return path if path and Path(path).exists() else ""


def file_widget(mode: Any, filt: str = "", title: str = "") -> QgsFileWidget:
    """A file / folder picker."""
    w = QgsFileWidget()
    w.setStorageMode(mode)
    if filt:
        w.setFilter(filt)
    if title:
        w.setDialogTitle(title)
    return w


def _paths(widget: QgsFileWidget) -> list[str]:
    return [p for p in QgsFileWidget.splitFilePaths(widget.filePath()) if p.strip()]


def _source_pages(box: QGroupBox, mode: QComboBox, pages: list[QWidget]) -> QStackedWidget:
    """Lay out `box` as a source choice over one page per choice; returns the pages."""
    stack = QStackedWidget()
    for w in pages:
        stack.addWidget(w)
    mode.currentIndexChanged.connect(stack.setCurrentIndex)
    form = QFormLayout(box)
    form.addRow("Source", mode)
    form.addRow("", stack)
    return stack


class ImageryInput(QGroupBox):
    """Imagery: a raster layer of the project, image files, or a folder."""

    MODES = ("Raster layer", "Image files", "Folder (Inria images/ + gt/, or pairs)")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Imagery", parent)
        self.mode = QComboBox()
        self.mode.addItems(self.MODES)
        self.layer = QgsMapLayerComboBox()
        self.layer.setFilters(layer_filter("RasterLayer"))
        self.files = file_widget(QgsFileWidget.StorageMode.GetMultipleFiles,
                                 "GeoTIFF (*.tif *.tiff);;All files (*)", "Image files")
        self.folder = file_widget(QgsFileWidget.StorageMode.GetDirectory,
                                  title="Imagery folder")
        self.stack = _source_pages(self, self.mode, [self.layer, self.files, self.folder])

    def parameters(self) -> dict[str, Any]:
        """INPUT (a layer id or image files) or FOLDER."""
        i = self.mode.currentIndex()
        if i == 0:
            layer = self.layer.currentLayer()
            return {a.INPUT: [layer.id()]} if layer is not None else {}
        if i == 1:
            return {a.INPUT: _paths(self.files)}
        text = self.folder.filePath().strip()
        if not text:
            raise InputError("no imagery folder chosen; pick one or switch the imagery source")
        return {a.FOLDER: text}

    def hint_folder(self) -> str:
        """Return a folder next to the imagery, for the default output place."""
        i = self.mode.currentIndex()
        if i == 0:
            try:
                return str(inputs.raster_layer_file(self.layer.currentLayer()).parent)
            except SegexplainError:
                return ""
        if i == 1:
            files = _paths(self.files)
            return str(Path(files[0]).parent) if files else ""
        text = self.folder.filePath().strip()
        return str(Path(text).parent) if text else ""


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
        self.raster.setFilters(layer_filter("RasterLayer"))
        self.vector = QgsMapLayerComboBox()
        self.vector.setFilters(layer_filter("PolygonLayer"))
        self.files = file_widget(QgsFileWidget.StorageMode.GetMultipleFiles,
                                 "Labels (*.tif *.tiff *.gpkg *.geojson *.shp);;All files (*)",
                                 "Label files")
        self.stack = _source_pages(
            self, self.mode,
            ([QWidget()] if optional else []) + [QWidget(), self.raster, self.vector, self.files])

    def parameters(self) -> dict[str, Any]:
        """LABELS: a layer id or label files; none when found with the imagery (or none)."""
        text = self.mode.currentText()
        if text.startswith(("None", "Found")):
            return {}
        if text == "Raster layer" or text.startswith("Vector layer"):
            layer = (self.raster if text == "Raster layer" else self.vector).currentLayer()
            if layer is None:
                raise InputError(f"no {text.split()[0].lower()} layer chosen for the labels; "
                                 "pick one or choose another label source")
            return {a.LABELS: [layer.id()]}
        paths = _paths(self.files)
        if not paths:
            raise InputError("no label files chosen; pick them or choose another label source")
        return {a.LABELS: paths}


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
        self.folder = file_widget(QgsFileWidget.StorageMode.GetDirectory, title="Model folder")
        self.file = file_widget(QgsFileWidget.StorageMode.GetFile,
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
        self.folder.setFilePath(existing(settings.value("model_folder", "")))
        self._kind_changed()

    def _kind_changed(self, *_args: Any) -> None:
        key = self.kind.currentData()
        self.path_stack.setCurrentIndex(0 if key == "folder" else 1)
        self.arch.setEnabled(key == "checkpoint")
        self.encoder.setEnabled(key == "checkpoint")

    def parameters(self) -> dict[str, Any]:
        """MODEL (a folder), or MODEL_FILE with ARCH / ENCODER for a checkpoint."""
        key = self.kind.currentData()
        if key == "folder":
            return {a.MODEL: self.folder.filePath().strip()}
        path = self.file.filePath().strip()
        if key == "onnx":
            if path and not path.lower().endswith(".onnx"):
                raise InputError(f"model {path}: an ONNX model is a .onnx file; pick one or "
                                 "choose the checkpoint kind")
            return {a.MODEL_FILE: path}
        return {a.MODEL_FILE: path, a.ARCH: self.arch.currentText(),
                a.ENCODER: self.encoder.currentText().strip()}

    def remember(self) -> None:
        """Keep the model folder for the next dialog."""
        if self.kind.currentData() == "folder" and self.folder.filePath().strip():
            settings.set_value("model_folder", self.folder.filePath().strip())

    def show_model(self, model: dict[str, Any]) -> None:
        """Pre-fill a bundle manifest's model (path; architecture of a checkpoint)."""
        path = Path(str(model.get("path") or ""))
        if path.is_dir():
            self.kind.setCurrentIndex(0)
            self.folder.setFilePath(str(path))
        elif path.is_file():
            self.kind.setCurrentIndex(2 if path.suffix.lower() == ".onnx" else 1)
            self.file.setFilePath(str(path))
            if model.get("arch") in inputs.ARCHS:
                self.arch.setCurrentText(str(model["arch"]))
            if model.get("encoder"):
                self.encoder.setCurrentText(str(model["encoder"]))
