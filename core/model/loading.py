"""Open any model path with the lightest loader: an ONNX file without torch.

An ``.onnx`` file (written by `segexplain export-onnx`) opens with onnxruntime alone
(`spec.load_onnx_model`); a model folder or checkpoint with `models.load_model`, which
needs torch: without it, a `DependencyError` says what to pass or install instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .spec import OnnxModel, is_onnx, load_onnx_model, require_torch

if TYPE_CHECKING:
    from .models import LoadedModel


def load_any(path: str | Path, **checkpoint_args: Any) -> LoadedModel | OnnxModel:
    """An `OnnxModel` for an ``.onnx`` file, else `models.load_model(path, ...)`."""
    if is_onnx(path):
        return load_onnx_model(path)
    require_torch(f"the model {path}")
    from .models import load_model

    return load_model(path, **checkpoint_args)
