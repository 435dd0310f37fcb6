"""Processing algorithms: each one runs a core command in the worker Python.

They run wherever Processing runs them (a background thread of QGIS, the modeler,
`qgis_process`): the core command line is a child process (`worker.WorkerRun`), its
JSON-lines progress goes to the Processing feedback, Cancel stops it, and its explained
error becomes a QgsProcessingException.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputFolder,
    QgsProcessingOutputNumber,
    QgsProcessingOutputVectorLayer,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ...core.engine.records import IOU_CONVENTION_QUESTION, IOU_CONVENTIONS
from ...core.errors import CancelledError, SegexplainError
from .. import inputs, settings
from ..worker import StageProgress, WorkerRun

IOU = list(IOU_CONVENTIONS)
BACKENDS = ["auto", "torch", "onnx"]
FORMATS = ["gpkg", "geojson"]
FOLDER = QgsProcessingParameterFile.Behavior.Folder
FILE = QgsProcessingParameterFile.Behavior.File


class CoreAlgorithm(QgsProcessingAlgorithm):
    """Common part: run `command args` in the worker and report progress."""

    command = ""

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def run_core(self, args: list[str], feedback: QgsProcessingFeedback,
                 out: Path | None = None) -> dict[str, Any]:
        """Run the command; progress and log to `feedback`; errors as exceptions."""
        feedback = feedback or QgsProcessingFeedback()
        python = settings.worker_python()
        feedback.pushInfo(f"worker: {python} -m segexplain.core.cli {self.command} "
                          + " ".join(args))
        stages = StageProgress()

        def on_event(event: dict[str, Any]) -> None:
            feedback.setProgress(stages.update(event))
            kind = event.get("event")
            if kind == "stage":
                feedback.setProgressText(str(event.get("stage", "")))
            elif kind == "log":
                feedback.pushInfo(str(event.get("message", "")))

        run = WorkerRun(python, self.command, args, out=out)
        try:
            return run.run(on_event, feedback.isCanceled)
        except CancelledError as exc:
            raise QgsProcessingException(str(exc)) from exc
        except SegexplainError as exc:
            for line in list(run.stderr_tail)[-20:]:
                feedback.pushDebugInfo(line)
            raise QgsProcessingException(str(exc)) from exc

    # shared parameter helpers --------------------------------------------------------
    def add_data_params(self, labels_optional: bool) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", "Imagery (raster layers)", QgsProcessing.SourceType.TypeRaster,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "FOLDER", "…or an imagery folder (Inria images/ + gt/, or pairs)", FOLDER,
            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "LABELS", "Labels (raster or polygon layers; empty: found with the imagery)",
            QgsProcessing.SourceType.TypeMapLayer, optional=True))

    def add_model_params(self) -> None:
        self.addParameter(QgsProcessingParameterFile(
            "MODEL", "Model folder (segexplain train / smp save_pretrained)", FOLDER,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            "MODEL_FILE", "…or a model file (checkpoint or .onnx)", FILE, optional=True))
        self.addParameter(QgsProcessingParameterString(
            "ARCH", "Architecture of a checkpoint", "unet", optional=True))
        self.addParameter(QgsProcessingParameterString(
            "ENCODER", "Encoder of a checkpoint", "resnet34", optional=True))

    def data_args(self, parameters: dict[str, Any], context: QgsProcessingContext,
                  staging: Path) -> list[str]:
        images = [inputs.raster_layer_file(layer) for layer in
                  self.parameterAsLayerList(parameters, "INPUT", context)]
        folder = self.parameterAsFile(parameters, "FOLDER", context)
        labels = []
        for layer in self.parameterAsLayerList(parameters, "LABELS", context):
            if isinstance(layer, QgsVectorLayer):
                labels.append(inputs.vector_layer_file(layer, staging))
            elif isinstance(layer, QgsRasterLayer):
                labels.append(inputs.raster_layer_file(layer))
        if images and folder:
            raise QgsProcessingException("give either imagery layers or an imagery folder, "
                                         "not both")
        data = inputs.data_args(images=images, folder=Path(folder) if folder else None,
                                labels=labels, staging=staging)
        return data.args

    def model_args(self, parameters: dict[str, Any], context: QgsProcessingContext
                   ) -> list[str]:
        folder = self.parameterAsFile(parameters, "MODEL", context)
        file = self.parameterAsFile(parameters, "MODEL_FILE", context)
        if bool(folder) == bool(file):
            raise QgsProcessingException("give exactly one of: a model folder, a model file")
        if folder:
            return inputs.model_args("folder", folder)
        kind = "onnx" if file.lower().endswith(".onnx") else "checkpoint"
        return inputs.model_args(
            kind, file, arch=self.parameterAsString(parameters, "ARCH", context) or "unet",
            encoder=self.parameterAsString(parameters, "ENCODER", context) or "resnet34")

    @staticmethod
    def bundle_path(text: str) -> Path:
        p = Path(text)
        return p if p.name.endswith(inputs.BUNDLE_SUFFIX) else p.with_name(
            p.name + inputs.BUNDLE_SUFFIX)

    def bundle_outputs(self, result: dict[str, Any], out: Path) -> dict[str, Any]:
        bundle = result.get("bundle") or str(out)
        return {"OUTPUT": bundle, "PATCHES": f"{bundle}/patches.gpkg|layername=patches",
                "N_PATCHES": result.get("n_patches")}

    def add_bundle_outputs(self) -> None:
        self.addOutput(QgsProcessingOutputVectorLayer(
            "PATCHES", "Patch footprints", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("N_PATCHES", "Number of patches"))

    def run_with_staging(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        staging = inputs.new_staging()
        try:
            return self.process(parameters, context, feedback, staging)
        except SegexplainError as exc:
            raise QgsProcessingException(str(exc)) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        return self.run_with_staging(parameters, context, feedback)

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback, staging: Path) -> dict[str, Any]:
        raise NotImplementedError


class AnalyzeAlgorithm(CoreAlgorithm):
    """segexplain:analyze."""

    command = "analyze"

    def name(self) -> str:
        return "analyze"

    def displayName(self) -> str:
        return "Analyze labelled imagery (analysis bundle)"

    def shortHelpString(self) -> str:
        return ("Runs the U-Net over labelled imagery in patches, scores every patch by IoU, "
                "places the patches on a 2-D latent plane with an estimated-IoU heatmap and "
                "clusters them. Writes an analysis bundle (NAME.segx) that the segexplain "
                "explorer opens. The work runs in the worker Python set in segexplain "
                "Settings (torch, onnxruntime), never inside QGIS.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add_data_params(labels_optional=False)
        self.add_model_params()
        self.addParameter(QgsProcessingParameterNumber(
            "PATCH_SIZE", "Patch size (px)", QgsProcessingParameterNumber.Type.Integer, 256,
            minValue=32, maxValue=4096))
        self.addParameter(QgsProcessingParameterNumber(
            "STRIDE", "Stride (px, 0 = patch size)", QgsProcessingParameterNumber.Type.Integer,
            0, minValue=0, maxValue=4096))
        self.addParameter(QgsProcessingParameterEnum(
            "IOU_CONVENTION", IOU_CONVENTION_QUESTION, IOU,
            defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("BACKEND", "Back end", BACKENDS,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            "OUTPUT", "Analysis bundle (NAME.segx folder)"))
        self.add_bundle_outputs()

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback, staging: Path) -> dict[str, Any]:
        out = self.bundle_path(self.parameterAsString(parameters, "OUTPUT", context))
        args = self.data_args(parameters, context, staging) + self.model_args(parameters,
                                                                                context)
        if "--backend" not in args:
            args += ["--backend", BACKENDS[self.parameterAsEnum(parameters, "BACKEND",
                                                                  context)]]
        size = self.parameterAsInt(parameters, "PATCH_SIZE", context)
        stride = self.parameterAsInt(parameters, "STRIDE", context)
        args += ["--patch-size", str(size), "--iou-convention",
                 IOU[self.parameterAsEnum(parameters, "IOU_CONVENTION", context)]]
        if stride:
            args += ["--stride", str(stride)]
        args += ["--out", str(out)]
        return self.bundle_outputs(self.run_core(args, feedback, out), out)


class EstimateAlgorithm(CoreAlgorithm):
    """segexplain:estimate."""

    command = "estimate"

    def name(self) -> str:
        return "estimate"

    def displayName(self) -> str:
        return "Estimate new region (estimate bundle)"

    def shortHelpString(self) -> str:
        return ("Places the patches of a new region (no ground truth needed) in the latent "
                "space of a reference analysis bundle, estimates their IoU and how far they "
                "lie from the training data (novelty). Writes an estimate bundle. Patch size, "
                "stride and IoU convention come from the reference.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.add_data_params(labels_optional=True)
        self.addParameter(QgsProcessingParameterFile(
            "REFERENCE", "Reference analysis bundle (.segx folder)", FOLDER))
        self.add_model_params()
        self.addParameter(QgsProcessingParameterBoolean(
            "ENCODER_ONLY", "Encoder only (faster; no prediction)", False))
        self.addParameter(QgsProcessingParameterEnum("BACKEND", "Back end", BACKENDS,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFolderDestination(
            "OUTPUT", "Estimate bundle (NAME.segx folder)"))
        self.add_bundle_outputs()

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback, staging: Path) -> dict[str, Any]:
        out = self.bundle_path(self.parameterAsString(parameters, "OUTPUT", context))
        ref = self.parameterAsFile(parameters, "REFERENCE", context)
        args = self.data_args(parameters, context, staging) + ["--reference", ref]
        args += self.model_args(parameters, context)
        if "--backend" not in args:
            args += ["--backend", BACKENDS[self.parameterAsEnum(parameters, "BACKEND",
                                                                  context)]]
        if self.parameterAsBool(parameters, "ENCODER_ONLY", context):
            args.append("--encoder-only")
        args += ["--out", str(out)]
        return self.bundle_outputs(self.run_core(args, feedback, out), out)


class ExportTasksAlgorithm(CoreAlgorithm):
    """segexplain:exporttasks."""

    command = "export-tasks"

    def name(self) -> str:
        return "exporttasks"

    def displayName(self) -> str:
        return "Export mapping tasks (map / skip / check)"

    def shortHelpString(self) -> str:
        return ("From an analysis or estimate bundle, writes one polygon per patch with a "
                "task attribute: map (buildings predicted), skip (nothing to tag) or check "
                "(novel or uncertain), with estimated IoU and novelty: a pre-screening list "
                "for MapSwipe-style volunteer mapping. Needs only numpy and GDAL in the "
                "worker Python.")

    def initAlgorithm(self, config: dict[str, Any] | None = None) -> None:
        self.addParameter(QgsProcessingParameterFile(
            "BUNDLE", "Bundle (.segx folder)", FOLDER))
        self.addParameter(QgsProcessingParameterNumber(
            "BUILDING_FRAC", "Predicted building fraction from which a patch is a map task",
            QgsProcessingParameterNumber.Type.Double, 0.002, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            "NOVELTY_CHECK", "Novelty percentile from which a patch is a check task",
            QgsProcessingParameterNumber.Type.Double, 95.0, minValue=0.0, maxValue=100.0))
        self.addParameter(QgsProcessingParameterVectorDestination(
            "OUTPUT", "Tasks", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("MAP", "Map tasks"))
        self.addOutput(QgsProcessingOutputNumber("SKIP", "Skip tasks"))
        self.addOutput(QgsProcessingOutputNumber("CHECK", "Check tasks"))
        self.addOutput(QgsProcessingOutputFolder("BUNDLE_OUT", "Bundle"))

    def process(self, parameters: dict[str, Any], context: QgsProcessingContext,
                feedback: QgsProcessingFeedback, staging: Path) -> dict[str, Any]:
        bundle = self.parameterAsFile(parameters, "BUNDLE", context)
        out = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        path = out.split("|", 1)[0]
        fmt = "geojson" if path.lower().endswith((".geojson", ".json")) else "gpkg"
        args = [bundle, "--out", path, "--format", fmt, "--building-frac",
                str(self.parameterAsDouble(parameters, "BUILDING_FRAC", context)),
                "--novelty-check",
                str(self.parameterAsDouble(parameters, "NOVELTY_CHECK", context))]
        result = self.run_core(args, feedback)
        tasks = result.get("tasks") or {}
        return {"OUTPUT": result.get("out") or path, "MAP": tasks.get("map"),
                "SKIP": tasks.get("skip"), "CHECK": tasks.get("check"),
                "BUNDLE_OUT": bundle}
