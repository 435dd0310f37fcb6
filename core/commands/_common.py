"""Helpers shared by the analytics commands (analyze, estimate): versions, model, data."""

from __future__ import annotations

import argparse
import importlib
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..figures import format_number
from ..progress import Progress

if TYPE_CHECKING:
    from ..model.models import LoadedModel


def versions() -> dict[str, str]:
    """Versions of the packages that shaped a bundle."""
    from .. import __version__

    out = {"segexplain": __version__, "python": platform.python_version()}
    for name in ("numpy", "torch", "sklearn", "onnxruntime", "segmentation_models_pytorch"):
        try:
            out[name] = str(importlib.import_module(name).__version__)
        except (ImportError, AttributeError):
            continue
    return out


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """`--model` and the architecture of a bare checkpoint (a folder describes itself)."""
    parser.add_argument("--model", required=True, type=Path,
                        help="model folder (segexplain train / smp save_pretrained) or a "
                             "state-dict checkpoint (.pt/.pth/.safetensors) with --arch/--encoder")
    parser.add_argument("--arch", default="unet", help="checkpoint only: smp architecture")
    parser.add_argument("--encoder", default="resnet34", help="checkpoint only: smp encoder")
    parser.add_argument("--in-channels", type=int, default=3,
                        help="checkpoint only: input bands of the model")


def load(args: argparse.Namespace, progress: Progress) -> LoadedModel:
    """Load the model folder / checkpoint as a `LoadedModel` (torch imported here)."""
    from ..errors import ModelLoadError
    from ..model.models import load_model

    progress.stage("load model", 0)
    path = Path(args.model)
    if path.suffix.lower() == ".onnx":
        raise ModelLoadError(
            f"--model {path}: an ONNX file cannot be analysed on its own yet; pass the model "
            "folder or checkpoint it was exported from (with --backend onnx the engine "
            "exports and caches the ONNX model next to it)")
    return load_model(path, arch=getattr(args, "arch", "unet"),
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
