"""Inference back ends: eager PyTorch (CUDA or CPU) and onnxruntime (CPU).

Every back end maps a float32 batch (B, C, S, S) to building probabilities (B, S, S)
float32 and embeddings (B, D) float32, or to embeddings alone in encoder-only mode.

- ``torch`` on CUDA: autocast (bf16 where supported, else fp16), channels_last,
  pinned host memory and non-blocking copies, batch size chosen from free memory.
- ``torch`` on CPU: float32, `threads` intra-op threads.
- ``onnx``: the same two-output (or encoder-only) network exported to ONNX and run by
  onnxruntime's CPU provider. Exports are cached next to the model, keyed by the hash
  of its weights, the patch size and the pooling, so a model is exported once.

``backend="auto"`` picks CUDA when torch sees a GPU, else onnxruntime when it is
installed (falling back to torch CPU if the export fails), else torch CPU. An ONNX file
(`spec.OnnxModel`) runs on onnxruntime whatever torch there is: this module imports
torch only where a torch model is run or exported, so a field worker without torch
estimates from an ONNX file.
"""

from __future__ import annotations

import copy
import os
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigurationError, DependencyError, DeviceError
from ..progress import NULL_PROGRESS, Progress
from .spec import FULL_WORKER, OnnxModel, onnx_metadata, require_onnxruntime

if TYPE_CHECKING:
    from .models import LoadedModel

BACKENDS = ("auto", "torch", "cuda", "cpu", "onnx")
ONNX_OPSET = 17
CPU_BATCH = 8


def default_threads(own: int = 0) -> int:
    """Intra-op threads for this machine now: its cores minus the current load.

    On a shared machine, OpenMP threads that outnumber the free cores spin and wait on
    each other (a step can take 3x longer with 2 threads than with 1), so the default
    leaves the busy cores alone; on an idle machine it is the core count. `own`: threads
    this process already runs (counted in the load average, not taken from others).
    """
    cores = os.cpu_count() or 1
    try:
        load = max(0.0, os.getloadavg()[0] - own)
    except OSError:
        return cores
    return max(1, min(cores, round(cores - load + 0.5)))


def onnx_available() -> bool:
    """Return True when onnxruntime can be imported."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_backend(backend: str) -> str:
    """Return the concrete back end ("cuda", "cpu" or "onnx") `backend` means here."""
    if backend not in BACKENDS:
        raise ConfigurationError(
            f"backend {backend!r} is unknown: expected one of {', '.join(BACKENDS)}")
    if backend in ("torch", "cuda", "cpu"):
        try:
            import torch  # noqa: F401
        except ImportError:
            raise DependencyError(
                f"backend {backend!r} needs torch, which this Python lacks: use --backend "
                f"onnx with an ONNX model, or {FULL_WORKER}") from None
    cuda = cuda_available()
    if backend == "auto":
        return "cuda" if cuda else ("onnx" if onnx_available() else "cpu")
    if backend == "torch":
        return "cuda" if cuda else "cpu"
    if backend == "cuda" and not cuda:
        raise DeviceError(
            "backend 'cuda' was requested but torch sees no CUDA device; use --backend auto")
    if backend == "onnx" and not onnx_available():
        raise ConfigurationError(
            "backend 'onnx' was requested but onnxruntime is not installed; "
            "pip install onnxruntime or use --backend torch")
    return backend


class TorchBackend:
    """Eager PyTorch on CUDA (mixed precision) or CPU."""

    def __init__(self, model: LoadedModel, *, device: str = "cpu", pooling: str = "avg",
                 encoder_only: bool = False, threads: int | None = None) -> None:
        import torch

        from .models import EncoderNet, ExplainNet

        self.encoder_only = encoder_only
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        net = (EncoderNet(model.module, pooling) if encoder_only
               else ExplainNet(model.module, pooling))
        self.net = net.eval()
        self.amp_dtype: Any = None
        if self.device.type == "cuda":
            # a copy: the caller's model stays on the CPU (exports, other back ends)
            self.net = copy.deepcopy(self.net).to(self.device).to(
                memory_format=torch.channels_last)
            self.amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported()
                              else torch.float16)
            torch.backends.cudnn.benchmark = True
        else:
            torch.set_num_threads(int(threads or default_threads()))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(probabilities or None, embeddings) for a float32 batch (B, C, S, S)."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        with torch.inference_mode():
            if self.device.type == "cuda":
                x = x.pin_memory().to(self.device, non_blocking=True)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast("cuda", dtype=self.amp_dtype or torch.float16):
                    out = self.net(x)
            else:
                out = self.net(x)
        if self.encoder_only:
            return None, out.float().cpu().numpy()
        prob, emb = out
        return prob.float().cpu().numpy(), emb.float().cpu().numpy()

    def suggest_batch_size(self, in_channels: int, patch_size: int) -> int:
        """Largest batch (up to 256) whose activations fit in half the free GPU memory."""
        if self.device.type != "cuda":
            return CPU_BATCH
        import torch

        torch.cuda.empty_cache()
        free, _ = torch.cuda.mem_get_info(self.device)
        probe = np.zeros((2, in_channels, patch_size, patch_size), np.float32)
        torch.cuda.reset_peak_memory_stats(self.device)
        base = torch.cuda.memory_allocated(self.device)
        self.run(probe)
        per_item = max((torch.cuda.max_memory_allocated(self.device) - base) / 2, 1.0)
        return int(max(1, min(256, (0.5 * free) // per_item)))


class CpuDevice:
    """The device of the onnxruntime back end, shaped like `torch.device("cpu")`."""

    type = "cpu"

    def __str__(self) -> str:
        return "cpu"


class OnnxBackend:
    """onnxruntime CPU session over an exported two-output (or encoder-only) network."""

    def __init__(self, onnx_path: Path, *, encoder_only: bool = False,
                 threads: int | None = None) -> None:
        require_onnxruntime(f"the ONNX back end ({onnx_path})")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = int(threads or default_threads())
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                            providers=["CPUExecutionProvider"])
        self.encoder_only = encoder_only
        self.path = Path(onnx_path)
        self.name = "onnx-cpu"
        self.device = CpuDevice()
        self._input = self.session.get_inputs()[0].name
        names = [o.name for o in self.session.get_outputs()]
        # by name: an encoder-only run of a two-output file takes its embedding alone
        self._outputs = ["embedding"] if encoder_only and "embedding" in names else None

    def run(self, batch: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """(probabilities or None, embeddings) for a float32 batch (B, C, S, S)."""
        x = np.ascontiguousarray(batch, dtype=np.float32)
        outs = self.session.run(self._outputs, {self._input: x})
        if self.encoder_only:
            return None, outs[0]
        return outs[0], outs[1]

    def suggest_batch_size(self, in_channels: int, patch_size: int) -> int:
        """Return a batch size that keeps the cores busy without large buffers."""
        return CPU_BATCH


Backend = TorchBackend | OnnxBackend


def export_onnx(model: LoadedModel, out_path: str | Path, *, patch_size: int = 256,
                pooling: str = "avg", encoder_only: bool = False) -> Path:
    """Export the two-output (or encoder-only) network; batch size stays dynamic.

    Uses the TorchScript exporter (dynamo=False), else the dynamo exporter. The file
    carries the model's description in its metadata properties (`spec.onnx_metadata`),
    so it runs without the model folder and without torch. It is written under a
    temporary name and renamed, so a cached export is never partial.
    """
    import torch

    from .models import EncoderNet, ExplainNet

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    net = (EncoderNet(model.module, pooling) if encoder_only
           else ExplainNet(model.module, pooling))
    net = net.cpu().eval()
    outputs = ["embedding"] if encoder_only else ["prob", "embedding"]
    x = torch.zeros(2, model.in_channels, patch_size, patch_size)
    axes = {name: {0: "batch"} for name in ["image", *outputs]}
    fd, tmp = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(net, (x,), tmp, input_names=["image"],
                                  output_names=outputs, dynamic_axes=axes,
                                  opset_version=ONNX_OPSET, dynamo=False)
        except Exception:  # noqa: BLE001 - fall back to the dynamo exporter
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(net, (x,), tmp, input_names=["image"], output_names=outputs,
                              dynamic_shapes={"x": {0: batch}}, dynamo=True)
        _add_metadata(Path(tmp), onnx_metadata(
            arch=model.arch, encoder=model.encoder, in_channels=model.in_channels,
            classes=model.classes, output_stride=model.output_stride, pooling=pooling,
            patch_size=patch_size, encoder_only=encoder_only, model_sha256=model.sha256))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        net.eval()
        model.module.eval()
        if os.path.exists(tmp):
            os.remove(tmp)
    return out


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    """Write `props` into the ONNX file's metadata properties (in place)."""
    import onnx

    proto = onnx.load(str(path))
    keep = [p for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in props.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def onnx_cache_path(model: LoadedModel, patch_size: int, pooling: str,
                    encoder_only: bool) -> Path:
    """Where the cached export of `model` lives (next to the model when writable)."""
    sha = model.sha256[:16] or "unhashed"
    name = f"{sha}-{patch_size}px-{pooling}{'-encoder' if encoder_only else ''}.onnx"
    candidates: list[Path] = []
    if model.path is not None:
        base = model.path if model.path.is_dir() else model.path.parent
        candidates.append(base / "onnx-cache")
    cache_home = os.environ.get("SEGEXPLAIN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "segexplain")
    candidates.append(Path(cache_home) / "onnx")
    for folder in candidates:
        if (folder / name).is_file():
            return folder / name
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(folder, os.W_OK):
            return folder / name
    return Path(tempfile.gettempdir()) / name


def cached_onnx(model: LoadedModel, patch_size: int, pooling: str,
                encoder_only: bool) -> Path:
    """Return the cached export for these settings, exporting it on first use."""
    path = onnx_cache_path(model, patch_size, pooling, encoder_only)
    if not path.is_file():
        export_onnx(model, path, patch_size=patch_size, pooling=pooling,
                    encoder_only=encoder_only)
    return path


def make_backend(model: LoadedModel | OnnxModel, backend: str = "auto", *,
                 patch_size: int = 256, pooling: str = "avg", encoder_only: bool = False,
                 threads: int | None = None,
                 progress: Progress = NULL_PROGRESS) -> Backend:
    """Build the back end `backend` means on this machine (see the module doc)."""
    if isinstance(model, OnnxModel):
        if backend not in ("auto", "onnx"):
            raise ConfigurationError(
                f"--backend {backend} cannot run the ONNX file {model.path.name}: use "
                "--backend onnx (or auto), or pass the model folder it was exported from")
        model.check_settings(patch_size, pooling, encoder_only)
        return OnnxBackend(model.network_for(encoder_only), encoder_only=encoder_only,
                           threads=threads)
    kind = resolve_backend(backend)
    if kind == "onnx":
        try:
            path = cached_onnx(model, patch_size, pooling, encoder_only)
            return OnnxBackend(path, encoder_only=encoder_only, threads=threads)
        except Exception as exc:  # noqa: BLE001 - auto mode degrades to eager torch
            if backend == "onnx":
                raise ConfigurationError(
                    f"ONNX export/load of {model.path or 'the model'} failed "
                    f"({type(exc).__name__}: {exc}); use --backend torch") from None
            progress.log(f"onnxruntime unavailable for this model ({type(exc).__name__}); "
                         "using PyTorch on CPU", level="warning")
            kind = "cpu"
    return TorchBackend(model, device=kind, pooling=pooling, encoder_only=encoder_only,
                        threads=threads)


def backend_info(b: Backend) -> dict[str, Any]:
    """Name and device for logs and benchmarks."""
    info: dict[str, Any] = {"backend": b.name, "device": str(b.device)}
    if isinstance(b, OnnxBackend):
        info["onnx"] = str(b.path)
    return info
