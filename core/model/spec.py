"""What describes a model without torch: pooling names, ONNX files and their metadata.

`segexplain export-onnx` writes a self-describing ONNX file: besides the network (image
-> building probabilities + pooled bottleneck embedding, or the embedding alone) its
metadata properties (``segexplain.*``, see `ONNX_KEYS`) hold the architecture, encoder,
input channels, classes, output stride, pooling, patch size, outputs, the input
normalisation the engine applies, and the sha256 of the weights it was exported from.
`load_onnx_model` reads them with onnxruntime alone, so a field laptop without torch
runs `analyze` / `estimate` from the file; the weights' sha256 lets an estimate made
from the ONNX file use a reference bundle made from the model folder, and back.
`loading.load_any` opens a path with the lightest loader (an ``.onnx`` file here,
anything else with `models.load_model`, which needs torch).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, DependencyError, ModelLoadError, UnreadableFileError
from ..files import file_sha256

#: Pooling of the bottleneck feature map into the embedding vector.
POOLINGS = ("avg", "max", "avgmax")

#: Version of the metadata layout below.
ONNX_FORMAT = "segexplain-onnx/1"
#: The input the engine feeds every model (core/data/imagery.py).
NORMALIZATION = ("float32 NCHW in [0, 1]: uint8 bands / 255, other types a per-band 2-98 "
                 "percentile stretch; no mean/std normalisation")
#: Metadata properties of an exported file (all prefixed ``segexplain.``).
ONNX_KEYS = ("format", "arch", "encoder", "in_channels", "classes", "output_stride",
             "pooling", "patch_size", "outputs", "normalization", "model_sha256",
             "segexplain_version")
PREFIX = "segexplain."

#: What a full (torch) worker installs; named in every "install this" message.
FULL_WORKER = ("install the full worker (`make setup` in a checkout, or `pip install "
               "--require-hashes -r requirements.lock`; docs/offline.md)")


def encoder_path(out: Path) -> Path:
    """OUT.onnx -> OUT.encoder.onnx (the encoder-only network written beside it)."""
    return out.with_name(f"{out.stem}.encoder{out.suffix or '.onnx'}")


def onnx_metadata(*, arch: str, encoder: str, in_channels: int, classes: int,
                  output_stride: int, pooling: str, patch_size: int, encoder_only: bool,
                  model_sha256: str) -> dict[str, str]:
    """The ``segexplain.*`` metadata properties of an exported network."""
    from .. import __version__

    values = {"format": ONNX_FORMAT, "arch": arch, "encoder": encoder,
              "in_channels": in_channels, "classes": classes, "output_stride": output_stride,
              "pooling": pooling, "patch_size": patch_size,
              "outputs": "embedding" if encoder_only else "prob,embedding",
              "normalization": NORMALIZATION, "model_sha256": model_sha256,
              "segexplain_version": __version__}
    return {PREFIX + k: str(v) for k, v in values.items()}


def require_onnxruntime(what: str) -> None:
    """Raise DependencyError naming `what` when onnxruntime is not installed."""
    if importlib.util.find_spec("onnxruntime") is None:
        raise DependencyError(
            f"{what} needs onnxruntime, which this Python lacks: pip install onnxruntime "
            f"(pinned in requirements-field.lock), or {FULL_WORKER}")


@dataclass
class OnnxModel:
    """An ONNX file written by `segexplain export-onnx`: what the engine needs to run it."""

    path: Path
    arch: str
    encoder: str
    in_channels: int
    classes: int
    output_stride: int
    pooling: str
    patch_size: int
    outputs: tuple[str, ...]
    sha256: str                       # of the weights it was exported from
    onnx_sha256: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def encoder_only(self) -> bool:
        """True for the embedding-only network (no probabilities)."""
        return "prob" not in self.outputs

    def info(self) -> dict[str, Any]:
        """JSON-able description for bundles and logs (as `LoadedModel.info`, plus onnx)."""
        return {"path": str(self.path), "arch": self.arch, "encoder": self.encoder,
                "in_channels": self.in_channels, "classes": self.classes,
                "sha256": self.sha256, "format": "onnx", "onnx_sha256": self.onnx_sha256,
                "pooling": self.pooling, "patch_size": self.patch_size}

    def check_settings(self, patch_size: int, pooling: str, encoder_only: bool) -> None:
        """Refuse engine settings the exported network cannot serve, saying what to do."""
        if patch_size != self.patch_size:
            raise ConfigurationError(
                f"{self.path.name} takes {self.patch_size} px patches, the run asks for "
                f"{patch_size} px: pass --patch-size {self.patch_size} (an estimate takes "
                f"its reference's), or export again with `segexplain export-onnx MODEL "
                f"{self.path.name} --patch-size {patch_size}`")
        if pooling != self.pooling:
            raise ConfigurationError(
                f"{self.path.name} pools the bottleneck with {self.pooling!r}, the run asks "
                f"for {pooling!r}: export again with --pooling {pooling}")
        if self.encoder_only and not encoder_only:
            raise ConfigurationError(
                f"{self.path.name} is the encoder-only network (no prediction): pass the "
                f"two-output {self.path.name.replace('.encoder', '')} or use --encoder-only")

    def network_for(self, encoder_only: bool) -> Path:
        """The file to run: the encoder-only sibling when asked for and present."""
        if encoder_only and not self.encoder_only:
            sibling = encoder_path(self.path)
            if sibling.is_file():
                try:
                    other = load_onnx_model(sibling)
                except (ModelLoadError, UnreadableFileError):
                    return self.path
                if other.sha256 == self.sha256 and other.patch_size == self.patch_size \
                        and other.pooling == self.pooling and other.encoder_only:
                    return sibling
        return self.path


def read_onnx_metadata(path: Path) -> tuple[dict[str, str], list[str]]:
    """(metadata properties, output names) of an ONNX file, read with onnxruntime."""
    require_onnxruntime(f"the ONNX model {path}")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), sess_options=opts,
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelLoadError(f"{path} is not a readable ONNX model ({msg}); expected a file "
                             "written by `segexplain export-onnx`") from None
    meta = dict(session.get_modelmeta().custom_metadata_map)
    return meta, [o.name for o in session.get_outputs()]


def load_onnx_model(path: str | Path) -> OnnxModel:
    """Open an ONNX file written by `segexplain export-onnx` (onnxruntime, no torch)."""
    p = Path(path)
    if not p.is_file():
        raise UnreadableFileError(
            f"ONNX model {p} does not exist: expected a file written by `segexplain "
            "export-onnx MODEL OUT.onnx`")
    meta, outputs = read_onnx_metadata(p)
    props = {k[len(PREFIX):]: v for k, v in meta.items() if k.startswith(PREFIX)}
    missing = [k for k in ONNX_KEYS if k not in props]
    if missing:
        raise ModelLoadError(
            f"{p} lacks the segexplain metadata ({', '.join(missing[:3])}...): export it with "
            "`segexplain export-onnx MODEL OUT.onnx`, which records the architecture, "
            "channels, patch size and pooling the engine needs")
    if props["format"] != ONNX_FORMAT:
        raise ModelLoadError(f"{p} has metadata format {props['format']!r}, this version "
                             f"reads {ONNX_FORMAT!r}: export it again with this version")
    want = tuple(props["outputs"].split(","))
    if tuple(outputs) != want:
        raise ModelLoadError(f"{p} has outputs {outputs}, its metadata says {list(want)}: "
                             "export it again with `segexplain export-onnx`")
    try:
        return OnnxModel(
            path=p.resolve(), arch=props["arch"], encoder=props["encoder"],
            in_channels=int(props["in_channels"]), classes=int(props["classes"]),
            output_stride=int(props["output_stride"]), pooling=props["pooling"],
            patch_size=int(props["patch_size"]), outputs=want,
            sha256=props["model_sha256"], onnx_sha256=file_sha256(p), metadata=props)
    except ValueError as exc:
        raise ModelLoadError(f"{p}: unreadable segexplain metadata ({exc}); export it "
                             "again with `segexplain export-onnx`") from None


def is_onnx(path: str | Path) -> bool:
    """Whether `path` names an ONNX file (by its suffix)."""
    return Path(path).suffix.lower() == ".onnx"


def require_torch(what: str) -> None:
    """Raise DependencyError when torch / segmentation-models-pytorch are missing."""
    missing = [pip for mod, pip in (("torch", "torch"),
                                    ("segmentation_models_pytorch",
                                     "segmentation-models-pytorch"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        field = importlib.util.find_spec("onnxruntime") is not None
        raise DependencyError(
            f"{what} needs {' and '.join(missing)}, which this Python lacks"
            + (" (a field worker: estimate only, from an ONNX model)" if field else "")
            + ": pass the model's ONNX export (`segexplain export-onnx MODEL OUT.onnx` "
            f"where torch is installed) as --model, or {FULL_WORKER}")
