"""Helpers shared by the analytics commands (analyze, estimate): versions, model, data."""

from __future__ import annotations

import importlib
import platform
from pathlib import Path
from typing import Any

from ..progress import Progress


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


def load(model_path: Path, progress: Progress) -> Any:
    """Load the model folder / checkpoint as a `LoadedModel` (torch imported here)."""
    from ..models import load_model

    progress.stage("load model", 0)
    return load_model(model_path)


def print_scores(progress: Progress, title: str, scores: dict[str, Any]) -> None:
    """Log one line per estimator: MAE, R^2, Spearman."""
    for name, s in scores.items():
        if not isinstance(s, dict) or "mae" not in s:
            continue
        progress.log(f"{title} {name}: MAE {_f(s.get('mae'))}, R2 {_f(s.get('r2'))}, "
                     f"Spearman {_f(s.get('spearman'))} ({s.get('n', '?')} patches)")


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"
