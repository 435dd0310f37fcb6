"""Processing algorithms: each one runs a core command in the worker Python.

They run wherever Processing runs them (the toolbox, the modeler, `qgis_process`, and
the plugin's Analyze / Estimate dialogs): `prepareAlgorithm` checks the parameters and
turns them into the worker's command line (`arguments.worker_call`, in the thread of
the context: the main thread for a background task), `processAlgorithm` runs the core
command line as a child process (`worker.WorkerRun`, in its own process group), sends its
JSON-lines progress to the Processing feedback, stops it when the feedback is cancelled
(no process and no half bundle stay) and turns its explained error into a
QgsProcessingException.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
)

from ...core.engine.records import IOU_CONVENTION_QUESTION
from ...core.errors import CancelledError, SegexplainError
from ..worker import StageProgress, WorkerRun, log_output
from . import arguments as a
from .arguments import WorkerCall

FOLDER = QgsProcessingParameterFile.Behavior.Folder
FILE = QgsProcessingParameterFile.Behavior.File


@contextmanager
def explained() -> Iterator[None]:
    """Errors as a one-line QgsProcessingException (Processing shows its text as is)."""
    try:
        yield
    except QgsProcessingException:
        raise
    except SegexplainError as exc:
        raise QgsProcessingException(str(exc)) from exc
    except Exception as exc:  # a bug: one line, never a traceback in the message bar
        raise QgsProcessingException(
            f"unexpected {type(exc).__name__}: {exc}; see the segexplain log panel") from exc


class CoreAlgorithm(QgsProcessingAlgorithm):
    """Common part: parameters -> worker command (prepare), then run it (process)."""

    def __init__(self) -> None:
        super().__init__()
        self.call: WorkerCall | None = None

    def group(self) -> str:
        return ""

    def groupId(self) -> str:
        return ""

    def createInstance(self) -> QgsProcessingAlgorithm:
        return type(self)()

    def prepareAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> bool:
        with explained():
            self.call = a.worker_call(self, parameters, context)
        if feedback is not None:
            if self.call.staging is not None:  # also a run cancelled before it started
                feedback.canceled.connect(self.call.remove_staging)
            feedback.pushInfo(f"worker: {self.call.python} -m segexplain.core.cli "
                              f"{self.call.command} {' '.join(self.call.args)}")
        return True

    def processAlgorithm(self, parameters: dict[str, Any], context: QgsProcessingContext,
                         feedback: QgsProcessingFeedback) -> dict[str, Any]:
        with explained():
            call = self.call if self.call is not None else a.worker_call(self, parameters,
                                                                         context)
        self.call = None
        try:
            with explained():
                return self.outputs(self.run_core(call, feedback or QgsProcessingFeedback()),
                                    call)
        finally:
            call.remove_staging()

    def run_core(self, call: WorkerCall, feedback: QgsProcessingFeedback) -> dict[str, Any]:
        """Run the command; progress and log to `feedback`; errors as exceptions."""
        stages = StageProgress()

        def on_event(event: dict[str, Any]) -> None:
            feedback.setProgress(stages.update(event))
            kind = event.get("event")
            if kind == "stage":
                feedback.setProgressText(str(event.get("stage", "")))
            elif kind == "log":
                feedback.pushInfo(str(event.get("message", "")))

        run = WorkerRun(call.python, call.command, call.args, out=call.bundle)
        ok = False
        try:
            result = run.run(on_event, feedback.isCanceled)
            ok = True
            return result
        except CancelledError:
            raise
        except SegexplainError:
            for line in list(run.stderr_tail)[-20:]:
                feedback.pushDebugInfo(line)
            raise
        finally:
            log_output(run, ok)

    def outputs(self, result: dict[str, Any], call: WorkerCall) -> dict[str, Any]:
        """The algorithm's results from the worker's done result."""
        bundle = result.get("bundle") or call.output
        return {"OUTPUT": bundle, "PATCHES": f"{bundle}/patches.gpkg|layername=patches",
                "N_PATCHES": result.get("n_patches")}

    # shared parameter definitions -----------------------------------------------------
    def add_data_params(self) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            a.INPUT, "Imagery (raster layers or image files)",
            QgsProcessing.SourceType.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            a.FOLDER, "…or an imagery folder (Inria images/ + gt/, or pairs)", FOLDER,
            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            a.LABELS, "Labels (raster or polygon layers, or files; empty: found with the "
            "imagery)", QgsProcessing.SourceType.TypeMapLayer, optional=True))

    def add_model_params(self) -> None:
        self.addParameter(QgsProcessingParameterFile(
            a.MODEL, "Model folder (segexplain train / smp save_pretrained)", FOLDER,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            a.MODEL_FILE, "…or a model file (checkpoint or .onnx)", FILE, optional=True))
        self.addParameter(QgsProcessingParameterString(
            a.ARCH, "Architecture of a checkpoint", a.DEFAULT_ARCH, optional=True))
        self.addParameter(QgsProcessingParameterString(
            a.ENCODER, "Encoder of a checkpoint", a.DEFAULT_ENCODER, optional=True))

    def add_backend_param(self) -> None:
        self.addParameter(QgsProcessingParameterEnum(a.BACKEND, "Back end", a.BACKENDS,
                                                     defaultValue=0))

    def add_bundle_outputs(self, what: str) -> None:
        self.addParameter(QgsProcessingParameterFolderDestination(
            a.OUTPUT, f"{what} bundle (NAME.segx folder)"))
        self.addOutput(QgsProcessingOutputVectorLayer(
            "PATCHES", "Patch footprints", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("N_PATCHES", "Number of patches"))


class AnalyzeAlgorithm(CoreAlgorithm):
    """segexplain:analyze."""

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
        self.add_data_params()
        self.add_model_params()
        self.addParameter(QgsProcessingParameterNumber(
            a.PATCH_SIZE, "Patch size (px)", QgsProcessingParameterNumber.Type.Integer, 256,
            minValue=32, maxValue=4096))
        self.addParameter(QgsProcessingParameterNumber(
            a.STRIDE, "Stride (px, 0 = patch size)", QgsProcessingParameterNumber.Type.Integer,
            0, minValue=0, maxValue=4096))
        self.addParameter(QgsProcessingParameterEnum(
            a.IOU_CONVENTION, IOU_CONVENTION_QUESTION, a.IOU, defaultValue=0))
        self.add_backend_param()
        self.add_bundle_outputs("Analysis")


class EstimateAlgorithm(CoreAlgorithm):
    """segexplain:estimate."""

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
        self.add_data_params()
        self.addParameter(QgsProcessingParameterFile(
            a.REFERENCE, "Reference analysis bundle (.segx folder)", FOLDER))
        self.add_model_params()
        self.addParameter(QgsProcessingParameterBoolean(
            a.ENCODER_ONLY, "Encoder only (faster; no prediction)", False))
        self.add_backend_param()
        self.add_bundle_outputs("Estimate")


class ExportTasksAlgorithm(CoreAlgorithm):
    """segexplain:exporttasks."""

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
            a.BUNDLE, "Bundle (.segx folder)", FOLDER))
        self.addParameter(QgsProcessingParameterNumber(
            a.BUILDING_FRAC, "Predicted building fraction from which a patch is a map task",
            QgsProcessingParameterNumber.Type.Double, 0.002, minValue=0.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(
            a.NOVELTY_CHECK, "Novelty percentile from which a patch is a check task",
            QgsProcessingParameterNumber.Type.Double, 95.0, minValue=0.0, maxValue=100.0))
        self.addParameter(QgsProcessingParameterVectorDestination(
            a.OUTPUT, "Tasks", QgsProcessing.SourceType.TypeVectorPolygon))
        self.addOutput(QgsProcessingOutputNumber("MAP", "Map tasks"))
        self.addOutput(QgsProcessingOutputNumber("SKIP", "Skip tasks"))
        self.addOutput(QgsProcessingOutputNumber("CHECK", "Check tasks"))
        self.addOutput(QgsProcessingOutputFolder("BUNDLE_OUT", "Bundle"))

    def outputs(self, result: dict[str, Any], call: WorkerCall) -> dict[str, Any]:
        tasks = result.get("tasks") or {}
        return {"OUTPUT": result.get("out") or call.output, "MAP": tasks.get("map"),
                "SKIP": tasks.get("skip"), "CHECK": tasks.get("check"),
                "BUNDLE_OUT": call.args[0]}
