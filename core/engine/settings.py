"""How the engine runs: every setting of `inference.analyze_images` in one frozen record.

The command line, the tiled runs of `core.scale` and the benchmarks build one
`EngineSettings` and hand it on unchanged; the resume key of a tile is made from its
fields. A setting that cannot change a result (only how fast it comes) is marked once,
here, with `speed_only`; everything else shapes the result and goes into the key.

No torch here (numpy and the standard library): a tile worker's key can be made without it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import ConfigurationError
from .metrics import check_convention


def speed_only(default: Any) -> Any:
    """A field whose value changes how fast the engine runs, never what it computes."""
    return field(default=default, metadata={"speed_only": True})


@dataclass(frozen=True)
class EngineSettings:
    """Patch grid, scoring, back end and throughput of one engine pass.

    `backend` is "auto", "torch", "cuda", "cpu" or "onnx" (see `model.backends`);
    `stride` None means the patch size; `bands` (1-based) picks the image bands the model
    takes (None: the first ones); `pooling` is checked against the model's poolings
    when the engine runs. `batch_size`, `threads` and `readers` None let the
    engine choose for the device.
    """

    patch_size: int = 256
    stride: int | None = None
    iou_convention: str = "zero"
    backend: str = "auto"
    encoder_only: bool = False
    thumb_size: int = 64
    pooling: str = "avg"
    min_valid: float = 0.5
    bands: tuple[int, ...] | None = None
    batch_size: int | None = speed_only(None)
    threads: int | None = speed_only(None)
    readers: int | None = speed_only(None)

    def __post_init__(self) -> None:
        if self.bands is not None:  # any sequence in, a hashable tuple kept
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
        check_convention(self.iou_convention)
        if not 0.0 <= float(self.min_valid) <= 1.0:
            raise ConfigurationError(
                f"min_valid {self.min_valid}: expected a fraction from 0 to 1")
        if self.thumb_size < 1 or self.thumb_size > self.patch_size:
            raise ConfigurationError(f"thumbnail size {self.thumb_size}: expected 1 to the "
                                     f"patch size {self.patch_size}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigurationError(f"batch size {self.batch_size}: expected at least 1")

    def result_key(self) -> dict[str, Any]:
        """The settings that shape the result (for resume keys), by name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if not f.metadata.get("speed_only")}

    def to_dict(self) -> dict[str, Any]:
        """Every setting by name (JSON-able)."""
        d = asdict(self)
        d["bands"] = list(self.bands) if self.bands is not None else None
        return d
