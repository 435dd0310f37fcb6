"""Processing parameters -> the worker's command line: the one mapping of user choices.

The algorithms `segexplain:analyze`, `segexplain:estimate` and `segexplain:exporttasks`
call `worker_call` when Processing prepares them; the Analyze / Estimate dialogs fill
the same parameters and run the same algorithms, so the toolbox, the modeler,
`qgis_process` and the dialogs start the same worker command for the same choices.

Processing prepares an algorithm in the thread its context belongs to (the main
thread for a background task), so layers become files here: a raster layer is its GDAL
file, a vector layer its file or a GeoPackage exported into the staging folder, and
several image files are staged as a folder of links (`inputs.data_args`). A layer value
that is a file path on disk is taken as that file. The staging folder goes when the run
ends (`WorkerCall.remove_staging`), or at the latest when Python exits.
"""

from __future__ import annotations

import shutil
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qgis.core import (
    QgsMapLayer,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ...core.engine.records import IOU_CONVENTIONS
from ...core.errors import InputError
from .. import inputs, settings

# parameter names, shared by the algorithms' definitions and the dialogs
INPUT, FOLDER, LABELS = "INPUT", "FOLDER", "LABELS"
MODEL, MODEL_FILE, ARCH, ENCODER = "MODEL", "MODEL_FILE", "ARCH", "ENCODER"
PATCH_SIZE, STRIDE, IOU_CONVENTION, BACKEND = "PATCH_SIZE", "STRIDE", "IOU_CONVENTION", "BACKEND"
REFERENCE, ENCODER_ONLY, OUTPUT = "REFERENCE", "ENCODER_ONLY", "OUTPUT"
BUNDLE, BUILDING_FRAC, NOVELTY_CHECK = "BUNDLE", "BUILDING_FRAC", "NOVELTY_CHECK"

#: Enum parameters take the index into these lists.
IOU = list(IOU_CONVENTIONS)
BACKENDS = ["auto", "torch", "onnx"]
DEFAULT_ARCH, DEFAULT_ENCODER = "unet", "resnet34"


@dataclass
class WorkerCall:
    """One worker command: its arguments, the bundle it writes, its staged inputs."""

    command: str
    args: list[str]
    output: str = ""               # the OUTPUT result: bundle folder or tasks file
    bundle: Path | None = None     # a bundle (half-written ones are removed on failure)
    staging: Path | None = None    # staged inputs, removed by `remove_staging`
    python: str = field(default_factory=lambda: settings.worker_python())  # as set now
    _finalizer: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.staging is not None:  # a run that never starts still cleans up at exit
            self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.staging), True)

    def remove_staging(self) -> None:
        """Remove the staged inputs (once; later calls do nothing)."""
        if self._finalizer is not None:
            self._finalizer()


class _Staging:
    """A staging folder made on first use."""

    def __init__(self) -> None:
        self.path: Path | None = None

    def __call__(self) -> Path:
        if self.path is None:
            self.path = inputs.new_staging()
        return self.path

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None


def worker_call(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
                context: QgsProcessingContext) -> WorkerCall:
    """Check the parameters of `alg` (a segexplain algorithm); return its worker command.

    Raises InputError (one line: the bad value and what to do); nothing stays staged then.
    """
    build = BUILDERS.get(alg.name())
    if build is None:
        raise InputError(f"algorithm {alg.name()!r}: expected one of {sorted(BUILDERS)}")
    staging = _Staging()
    try:
        call = build(alg, parameters, context, staging)
    except BaseException:
        staging.remove()
        raise
    return call if staging.path is None else replace(call, staging=staging.path)


# -- the parts of a command line -----------------------------------------------------------
def _layer_values(alg: QgsProcessingAlgorithm, parameters: dict[str, Any], name: str,
                  context: QgsProcessingContext, what: str) -> list[QgsMapLayer | Path]:
    """Files and layers of a multiple-layers parameter (a path on disk stays a path)."""
    raw = parameters.get(name)
    values = list(raw) if isinstance(raw, (list, tuple)) else [] if raw in (None, "") else [raw]
    found: list[QgsMapLayer | Path] = []
    for value in values:
        if isinstance(value, str) and "|" not in value and Path(value).exists():
            found.append(Path(value))
            continue
        layers = alg.parameterAsLayerList({name: [value]}, name, context)
        if not layers:
            raise InputError(f"{what} {value}: no such file, and no layer of the project by "
                             "that id or name; check the path or pick a layer")
        found.extend(layers)
    return found


def data_args(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
              context: QgsProcessingContext, staging: Callable[[], Path]) -> list[str]:
    """`--data` / `--labels` from INPUT (layers or files), FOLDER and LABELS."""
    images = [v if isinstance(v, Path) else inputs.raster_layer_file(v)
              for v in _layer_values(alg, parameters, INPUT, context, "imagery")]
    folder = alg.parameterAsFile(parameters, FOLDER, context)
    labels = []
    for v in _layer_values(alg, parameters, LABELS, context, "labels"):
        if isinstance(v, Path):
            labels.append(v)
        elif isinstance(v, QgsVectorLayer):
            labels.append(inputs.vector_layer_file(v, staging()))
        elif isinstance(v, QgsRasterLayer):
            labels.append(inputs.raster_layer_file(v))
        else:
            raise InputError(f"labels layer {v.name()!r}: expected a raster or polygon layer")
    if images and folder:
        raise InputError("imagery given both as layers or files and as a folder: give one "
                         "of them")
    return inputs.data_args(images=images, folder=Path(folder) if folder else None,
                            labels=labels,
                            staging=staging() if len(images) > 1 else None).args


def model_args(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
               context: QgsProcessingContext) -> list[str]:
    """`--model` (and architecture, or the ONNX back end) from MODEL or MODEL_FILE."""
    folder = alg.parameterAsFile(parameters, MODEL, context)
    file = alg.parameterAsFile(parameters, MODEL_FILE, context)
    if folder and file:
        raise InputError(f"a model folder ({folder}) and a model file ({file}) given: give "
                         "exactly one of them")
    if not (folder or file):
        raise InputError("no model given: give exactly one of a model folder (segexplain "
                         "train / smp save_pretrained) or a model file (checkpoint or .onnx)")
    if folder:
        return inputs.model_args("folder", folder)
    kind = "onnx" if file.lower().endswith(".onnx") else "checkpoint"
    return inputs.model_args(
        kind, file,
        arch=alg.parameterAsString(parameters, ARCH, context).strip() or DEFAULT_ARCH,
        encoder=alg.parameterAsString(parameters, ENCODER, context).strip() or DEFAULT_ENCODER)


def backend_args(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
                 context: QgsProcessingContext, args: list[str]) -> list[str]:
    """`--backend` unless the model already fixed it (an ONNX file runs on onnxruntime)."""
    if "--backend" in args:
        return []
    return ["--backend", BACKENDS[alg.parameterAsEnum(parameters, BACKEND, context)]]


def bundle_path(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
                context: QgsProcessingContext) -> Path:
    """The OUTPUT bundle folder, named NAME.segx."""
    text = alg.parameterAsString(parameters, OUTPUT, context).strip()
    if not text:
        raise InputError("no output bundle given; choose where NAME.segx goes")
    p = Path(text)
    return p if p.name.endswith(inputs.BUNDLE_SUFFIX) else p.with_name(
        p.name + inputs.BUNDLE_SUFFIX)


# -- the commands ---------------------------------------------------------------------------
def analyze(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
            context: QgsProcessingContext, staging: Callable[[], Path]) -> WorkerCall:
    """`analyze`: labelled imagery + model -> analysis bundle."""
    out = bundle_path(alg, parameters, context)
    size = alg.parameterAsInt(parameters, PATCH_SIZE, context)
    stride = alg.parameterAsInt(parameters, STRIDE, context)
    if stride > size:
        raise InputError(f"stride {stride} px is larger than the patch size {size} px: "
                         "patches would leave gaps; choose a stride up to the patch size")
    args = data_args(alg, parameters, context, staging) + model_args(alg, parameters, context)
    args += backend_args(alg, parameters, context, args)
    args += ["--patch-size", str(size), "--iou-convention",
             IOU[alg.parameterAsEnum(parameters, IOU_CONVENTION, context)]]
    if stride:
        args += ["--stride", str(stride)]
    return WorkerCall("analyze", [*args, "--out", str(out)], str(out), out)


def estimate(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
             context: QgsProcessingContext, staging: Callable[[], Path]) -> WorkerCall:
    """`estimate`: new imagery + reference bundle + model -> estimate bundle."""
    out = bundle_path(alg, parameters, context)
    ref = alg.parameterAsFile(parameters, REFERENCE, context).strip()
    if not ref or not (Path(ref) / "manifest.json").is_file():
        raise InputError(f"reference {ref or '(none)'}: not a finished bundle (no "
                         "manifest.json); pick the NAME.segx folder written by Analyze")
    args = data_args(alg, parameters, context, staging) + ["--reference", ref]
    args += model_args(alg, parameters, context)
    args += backend_args(alg, parameters, context, args)
    if alg.parameterAsBool(parameters, ENCODER_ONLY, context):
        args.append("--encoder-only")
    return WorkerCall("estimate", [*args, "--out", str(out)], str(out), out)


def export_tasks(alg: QgsProcessingAlgorithm, parameters: dict[str, Any],
                 context: QgsProcessingContext, staging: Callable[[], Path]) -> WorkerCall:
    """`export-tasks`: bundle -> one map / skip / check polygon per patch."""
    bundle = alg.parameterAsFile(parameters, BUNDLE, context)
    path = alg.parameterAsOutputLayer(parameters, OUTPUT, context).split("|", 1)[0]
    fmt = "geojson" if path.lower().endswith((".geojson", ".json")) else "gpkg"
    args = [bundle, "--out", path, "--format", fmt, "--building-frac",
            str(alg.parameterAsDouble(parameters, BUILDING_FRAC, context)),
            "--novelty-check", str(alg.parameterAsDouble(parameters, NOVELTY_CHECK, context))]
    return WorkerCall("export-tasks", args, path)


BUILDERS: dict[str, Callable[..., WorkerCall]] = {
    "analyze": analyze, "estimate": estimate, "exporttasks": export_tasks}
