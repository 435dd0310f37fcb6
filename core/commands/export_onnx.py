"""`segexplain export-onnx MODEL OUT.onnx`: the two-output and the encoder-only network.

Both files describe their model in their metadata properties (`model.spec`), so
`analyze` and `estimate` take either as --model, without torch and without the folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.spec import encoder_path
from ..progress import Progress

if TYPE_CHECKING:
    from ..model.models import LoadedModel

HELP = ("export a model to ONNX: OUT.onnx (probabilities + embedding) and "
        "OUT.encoder.onnx (embedding only)")


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of the command."""
    p.add_argument("model", type=Path, metavar="MODEL",
                   help="model folder (segexplain train / smp save_pretrained) or checkpoint")
    p.add_argument("out", type=Path, metavar="OUT.onnx", help="file to write")
    p.add_argument("--patch-size", type=int, default=256,
                   help="patch size the exported network takes (px)")
    p.add_argument("--pooling", choices=("avg", "max", "avgmax"), default="avg",
                   help="pooling of the bottleneck into the embedding")
    p.add_argument("--check", action="store_true",
                   help="run both files once with onnxruntime and compare with PyTorch")


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Export both networks; returns their paths (and the check's maximum differences)."""
    from ..errors import ConfigurationError
    from ..model.spec import is_onnx, require_torch

    if is_onnx(args.model):
        raise ConfigurationError(
            f"{args.model} is already an ONNX file: pass the model folder or checkpoint "
            "it was exported from")
    require_torch("export-onnx")
    from ..engine.inference import check_patch_size
    from ..model.backends import export_onnx
    from ..model.models import load_model

    model = load_model(args.model)
    check_patch_size(args.patch_size, None, model)
    out: Path = args.out
    enc = encoder_path(out)
    progress.stage("export", 2)
    export_onnx(model, out, patch_size=args.patch_size, pooling=args.pooling)
    progress.advance()
    export_onnx(model, enc, patch_size=args.patch_size, pooling=args.pooling,
                encoder_only=True)
    progress.advance()
    result: dict[str, Any] = {"onnx": str(out), "encoder_onnx": str(enc),
                              "patch_size": args.patch_size, "pooling": args.pooling,
                              "model_sha256": model.sha256}
    if args.check:
        result["check"] = _check(model, out, enc, args.patch_size, args.pooling)
        progress.log(f"onnxruntime vs PyTorch: {result['check']}")
    progress.log(f"wrote {out} and {enc}")
    return result


def _check(model: LoadedModel, out: Path, enc: Path, size: int,
           pooling: str) -> dict[str, float]:
    import numpy as np

    from ..model.backends import OnnxBackend, TorchBackend

    x = np.random.default_rng(0).random((2, model.in_channels, size, size), np.float32)
    tp, te = TorchBackend(model, pooling=pooling).run(x)
    op, oe = OnnxBackend(out).run(x)
    _, ee = OnnxBackend(enc, encoder_only=True).run(x)
    assert tp is not None and op is not None
    return {"prob_max_abs_diff": float(np.abs(tp - op).max()),
            "embedding_max_abs_diff": float(np.abs(te - oe).max()),
            "encoder_embedding_max_abs_diff": float(np.abs(te - ee).max())}
