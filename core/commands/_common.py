"""Helpers shared by the analytics commands (analyze, estimate): versions, model, data."""

from __future__ import annotations

import argparse
import importlib.util
import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..figures import format_number
from ..progress import Progress

if TYPE_CHECKING:
    from ..model.models import LoadedModel
    from ..model.spec import OnnxModel

#: Import name -> distribution name of the packages whose versions a bundle records.
VERSIONED = {"numpy": "numpy", "torch": "torch", "sklearn": "scikit-learn",
             "onnxruntime": "onnxruntime",
             "segmentation_models_pytorch": "segmentation-models-pytorch"}


def versions() -> dict[str, str]:
    """Versions of the packages that shaped a bundle (installed ones; nothing imported)."""
    from .. import __version__

    out = {"segexplain": __version__, "python": platform.python_version()}
    for name, dist in VERSIONED.items():
        try:
            out[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def require(command: str, modules: dict[str, str], why: str) -> None:
    """Raise DependencyError when an import name of `modules` (-> pip name) is missing."""
    from ..errors import DependencyError
    from ..model.spec import FULL_WORKER

    missing = [pip for module, pip in modules.items()
               if importlib.util.find_spec(module) is None]
    if missing:
        field = (importlib.util.find_spec("onnxruntime") is not None
                 and importlib.util.find_spec("torch") is None)
        raise DependencyError(
            f"{command} needs {', '.join(missing)} ({why}), which this Python lacks"
            + (" (a field worker: estimate only)" if field else "") + f": {FULL_WORKER}")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model` and the architecture of a bare checkpoint (a folder describes itself)."""
    parser.add_argument("--model", required=True, type=Path,
                        help="model folder (segexplain train / smp save_pretrained), a "
                             "state-dict checkpoint (.pt/.pth/.safetensors) with "
                             "--arch/--encoder, or an ONNX file from `segexplain export-onnx` "
                             "(runs without torch)")
    parser.add_argument("--arch", default="unet", help="checkpoint only: smp architecture")
    parser.add_argument("--encoder", default="resnet34", help="checkpoint only: smp encoder")
    parser.add_argument("--in-channels", type=int, default=3,
                        help="checkpoint only: input bands of the model")


def load(args: argparse.Namespace, progress: Progress) -> LoadedModel | OnnxModel:
    """Load --model: an `OnnxModel` for an ONNX file (no torch), else a `LoadedModel`."""
    from ..model.loading import load_any

    progress.stage("load model", 0)
    return load_any(Path(args.model), arch=getattr(args, "arch", "unet"),
                    encoder=getattr(args, "encoder", "resnet34"),
                    in_channels=getattr(args, "in_channels", 3))


def print_scores(progress: Progress, title: str, scores: dict[str, Any]) -> None:
    """Log one line per estimator: MAE, R^2, Spearman."""
    for name, s in scores.items():
        if not isinstance(s, dict) or "mae" not in s:
            continue
        progress.log(f"{title} {name}: MAE {format_number(s.get('mae'))}, R2 "
                     f"{format_number(s.get('r2'))}, Spearman "
                     f"{format_number(s.get('spearman'))} ({s.get('n', '?')} patches)")
