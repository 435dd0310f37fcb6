"""U-Net models (segmentation-models-pytorch): build, load, save, and the two-output wrapper.

A model is loaded from

- an smp `save_pretrained` folder (``config.json`` + ``model.safetensors``), or
- a state-dict checkpoint (``.pt``/``.pth``/``.ckpt``/``.safetensors``) plus the
  architecture arguments (default: arch unet, encoder resnet34, in_channels 3, classes 1).

Pickled objects are never executed: checkpoints go through ``torch.load(...,
weights_only=True)`` and folders through safetensors. No pretrained encoder weights
are ever downloaded (``encoder_weights=None``).

`ExplainNet` wraps a model through smp's public seams (``encoder``, ``decoder``,
``segmentation_head``) so that one forward pass returns the building probabilities and
the pooled bottleneck vector (the deepest encoder stage, ``encoder(x)[-1]``);
`EncoderNet` returns the vector alone and never runs the decoder.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ConfigurationError, ModelLoadError, UnreadableFileError
from ..files import file_sha256
from .spec import POOLINGS

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class LoadedModel:
    """A segmentation model and what is known about where it came from."""

    module: nn.Module
    arch: str
    encoder: str
    in_channels: int
    classes: int
    path: Path | None = None
    sha256: str = ""
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def output_stride(self) -> int:
        """Factor by which the encoder downsamples; patch sizes must be multiples of it."""
        return int(getattr(self.module.encoder, "output_stride", 32))

    @property
    def embedding_channels(self) -> int:
        """Channels of the deepest encoder stage (embedding size with avg pooling)."""
        encoder: Any = self.module.encoder
        return int(encoder.out_channels[-1])

    def info(self) -> dict[str, Any]:
        """JSON-able description for bundles and logs."""
        return {"path": str(self.path) if self.path else None, "arch": self.arch,
                "encoder": self.encoder, "in_channels": self.in_channels,
                "classes": self.classes, "sha256": self.sha256}


def build_model(arch: str = "unet", encoder: str = "resnet34", in_channels: int = 3,
                classes: int = 1, **kwargs: Any) -> nn.Module:
    """Build a freshly initialised smp model (never downloads weights)."""
    import segmentation_models_pytorch as smp

    kwargs.pop("encoder_weights", None)
    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=None,
                                in_channels=in_channels, classes=classes, **kwargs)
    except KeyError as exc:
        raise ConfigurationError(
            f"architecture {arch!r} or encoder {encoder!r} is unknown to "
            f"segmentation-models-pytorch ({exc}); use e.g. arch 'unet', encoder 'resnet34'"
        ) from None


def state_dict_sha256(module: nn.Module) -> str:
    """Hash of a module's parameters and buffers (names, shapes and bytes)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()




def _unwrap_checkpoint(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """Return the tensor dict of a checkpoint (plain, {'state_dict': ..}, {'model': ..})."""
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ModelLoadError(
            f"{path} holds a {type(obj).__name__}, not a state dict of tensors: expected a "
            "checkpoint saved with torch.save(model.state_dict()) or an smp save_pretrained "
            "folder")
    for prefix in ("module.", "model."):  # DataParallel / Lightning wrappers
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def _load_weights(module: nn.Module, sd: dict[str, torch.Tensor], path: Path,
                  expected: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        raise ModelLoadError(
            f"{path} does not fit {expected}: {' and '.join(parts)}; pass the architecture "
            "the checkpoint was trained with (--arch/--encoder/--in-channels/--classes)")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            hint = ""
            if v.ndim == 4 and sd[k].ndim == 4 and sd[k].shape[1] != v.shape[1] \
                    and k.startswith("encoder"):
                hint = (f" (the checkpoint takes {sd[k].shape[1]} input channels, "
                        f"the model {v.shape[1]}: pass --in-channels {sd[k].shape[1]})")
            raise ModelLoadError(
                f"{path}: weight {k} has shape {tuple(sd[k].shape)}, {expected} expects "
                f"{tuple(v.shape)}{hint}")
    module.load_state_dict(sd, strict=True)


def load_model(path: str | Path, *, arch: str = "unet", encoder: str = "resnet34",
               in_channels: int = 3, classes: int = 1) -> LoadedModel:
    """Load a model folder (smp save_pretrained) or a state-dict checkpoint.

    The architecture arguments are used only for checkpoints; a folder's config.json
    describes its own model.
    """
    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(
            f"model {p} does not exist: expected an smp save_pretrained folder or a "
            "state-dict checkpoint; train one with `segexplain train`")
    if p.is_dir():
        return _load_folder(p)
    expected = f"{arch}/{encoder} (in_channels={in_channels}, classes={classes})"
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            sd = load_file(str(p))
        except Exception as exc:  # noqa: BLE001 - any parse failure means "not weights"
            raise ModelLoadError(
                f"{p} is not a readable safetensors file ({exc}); expected model weights"
            ) from None
    else:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - unpickling errors come in many types
            msg = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            raise ModelLoadError(
                f"{p} is not a weights-only PyTorch checkpoint ({msg}); expected a file "
                "written by torch.save(model.state_dict())") from None
        sd = _unwrap_checkpoint(obj, p)
    module = build_model(arch, encoder, in_channels, classes)
    _load_weights(module, sd, p, expected)
    module.eval()
    return LoadedModel(module, arch, encoder, in_channels, classes, p, file_sha256(p),
                       {"arch": arch, "encoder_name": encoder, "in_channels": in_channels,
                        "classes": classes})


def _load_folder(p: Path) -> LoadedModel:
    cfg_path, w_path = p / CONFIG_FILE, p / WEIGHTS_FILE
    if not cfg_path.is_file() or not w_path.is_file():
        raise ModelLoadError(
            f"model folder {p} lacks {CONFIG_FILE} or {WEIGHTS_FILE}: expected a folder "
            "written by smp's save_pretrained (or `segexplain train`)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{cfg_path} is not valid JSON ({exc})") from None
    arch = str(cfg.get("_model_class", "Unet")).lower()
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    kwargs = dict(cfg)
    encoder = str(kwargs.pop("encoder_name", "resnet34"))
    in_channels = int(kwargs.pop("in_channels", 3))
    classes = int(kwargs.pop("classes", 1))
    try:
        module = build_model(arch, encoder, in_channels, classes, **kwargs)
    except TypeError as exc:
        raise ModelLoadError(f"{cfg_path} has arguments {arch} does not take ({exc})") from None
    from safetensors.torch import load_file
    try:
        sd = load_file(str(w_path))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"{w_path} is not a readable safetensors file ({exc})") from None
    _load_weights(module, sd, w_path,
                  f"{arch}/{encoder} (in_channels={in_channels}, classes={classes})")
    module.eval()
    return LoadedModel(module, arch, encoder, in_channels, classes, p, file_sha256(w_path),
                       cfg | {"encoder_name": encoder, "in_channels": in_channels,
                              "classes": classes})


def save_model(model: LoadedModel, out_dir: str | Path) -> Path:
    """Write `model` as an smp save_pretrained folder; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    module: Any = model.module
    module.save_pretrained(str(out))
    model.path = out
    model.sha256 = file_sha256(out / WEIGHTS_FILE)
    return out


def as_loaded(model: LoadedModel | nn.Module | str | Path) -> LoadedModel:
    """Accept a LoadedModel, a model folder/checkpoint path or a bare smp module."""
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, Path)):
        return load_model(model)
    if isinstance(model, nn.Module) and hasattr(model, "encoder") \
            and hasattr(model, "segmentation_head"):
        cfg = dict(getattr(model, "config", {}) or {})
        return LoadedModel(
            model, type(model).__name__.lower(), str(cfg.get("encoder_name", "unknown")),
            int(cfg.get("in_channels", _first_conv_channels(model))),
            int(cfg.get("classes", 1)), None, state_dict_sha256(model), cfg)
    raise ModelLoadError(
        f"model of type {type(model).__name__} is not usable: expected a model folder, a "
        "checkpoint path or a segmentation-models-pytorch model")


def _first_conv_channels(module: nn.Module) -> int:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    return 3


def _part(model: nn.Module, name: str) -> nn.Module:
    part = getattr(model, name, None)
    if not isinstance(part, nn.Module):
        raise ModelLoadError(
            f"model {type(model).__name__} has no {name} module: expected a "
            "segmentation-models-pytorch model (encoder, decoder, segmentation_head)")
    return part


def pool(features: torch.Tensor, pooling: str) -> torch.Tensor:
    """Global pooling of (B, C, h, w) into (B, C) ("avg", "max") or (B, 2C) ("avgmax")."""
    if pooling == "avg":
        return features.mean(dim=(2, 3))
    if pooling == "max":
        return features.amax(dim=(2, 3))
    if pooling == "avgmax":
        return torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)
    raise ConfigurationError(f"pooling {pooling!r} is unknown: expected one of {POOLINGS}")


class ExplainNet(nn.Module):
    """(B, C, S, S) image -> building probabilities (B, S, S) and embeddings (B, D)."""

    def __init__(self, model: nn.Module, pooling: str = "avg") -> None:
        super().__init__()
        pool(torch.zeros(1, 1, 1, 1), pooling)  # validates the name
        self.encoder: nn.Module = _part(model, "encoder")
        self.decoder: nn.Module = _part(model, "decoder")
        self.segmentation_head: nn.Module = _part(model, "segmentation_head")
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: sigmoid of the first class's logits, pooled deepest features."""
        features = self.encoder(x)
        emb = pool(features[-1], self.pooling)
        logits = self.segmentation_head(self.decoder(features))
        return torch.sigmoid(logits[:, 0].float()), emb.float()


class EncoderNet(nn.Module):
    """(B, C, S, S) image -> embeddings (B, D); the decoder never runs."""

    def __init__(self, model: nn.Module, pooling: str = "avg") -> None:
        super().__init__()
        pool(torch.zeros(1, 1, 1, 1), pooling)
        self.encoder: nn.Module = _part(model, "encoder")
        self.pooling = pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled deepest encoder features."""
        return pool(self.encoder(x)[-1], self.pooling).float()
