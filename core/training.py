"""Train a U-Net from scratch on any data set the data layer serves.

Training samples random square crops from the "train" images (read window by window
through `imagery.open_source`, a batch ahead in reader threads), with augmentation
(horizontal / vertical flips, 90 degree rotations, brightness and contrast jitter). The
loss is BCE + soft Dice over valid pixels; AdamW with a warm-up then a cosine decay
driven by whichever budget runs out first, the step count or the time limit, so a
`minutes`-limited run still anneals its learning rate. After every epoch the model
predicts every "val" image patch by patch and the overall validation IoU (total
intersection over total union) is logged; the best epoch's weights are kept.

Presets (`PRESETS`): "demo" (the built-in sample data, ~5 min on 2 cores) and "tiny"
(seconds; for tests and smoke runs).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from .errors import CancelledError, ConfigurationError, EmptyInputError
from .metrics import overall_iou
from .models import LoadedModel, as_loaded, build_model
from .progress import NULL_PROGRESS, Progress
from .windows import PatchWindow


@dataclass
class TrainConfig:
    """Everything that shapes a training run (JSON-able, logged with the model)."""

    arch: str = "unet"
    encoder: str = "resnet18"
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 8)
    in_channels: int = 3
    epochs: int = 8
    patch_size: int = 256            # training crop (px)
    val_patch_size: int = 256        # validation windows (px)
    batch_size: int = 8
    steps_per_epoch: int | None = None   # None: one pass over the training pixels
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    minutes: float | None = None     # wall-clock budget (training + validation)
    seed: int = 0
    threads: int | None = None
    val_every: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d


PRESETS: dict[str, TrainConfig] = {
    # sample data (5 regions x 3 training tiles of 1024 px): about 5 minutes on 2 cores
    "demo": TrainConfig(encoder="resnet18", decoder_channels=(128, 64, 32, 16, 8),
                        epochs=6, patch_size=160, batch_size=12, steps_per_epoch=45,
                        lr=3e-3, minutes=9.0),
    # seconds: a model that runs end to end, not one that segments well
    "tiny": TrainConfig(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8),
                        epochs=2, patch_size=64, val_patch_size=128, batch_size=4,
                        steps_per_epoch=4, lr=3e-3, warmup_steps=1),
}


# -- augmentation -----------------------------------------------------------------------

def augment(x: np.ndarray, y: np.ndarray, v: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Random flips, 90 degree rotations, brightness/contrast jitter for one crop.

    `x` (C, S, S) float in [0, 1], `y` and `v` (S, S); returns new arrays.
    """
    k = int(rng.integers(4))
    if k:
        x, y, v = (np.rot90(a, k, axes=(-2, -1)) for a in (x, y, v))
    if rng.random() < 0.5:
        x, y, v = x[..., ::-1], y[..., ::-1], v[..., ::-1]
    if rng.random() < 0.5:
        x, y, v = x[..., ::-1, :], y[..., ::-1, :], v[..., ::-1, :]
    gain = rng.uniform(0.8, 1.2)
    bias = rng.uniform(-0.08, 0.08)
    x = np.clip((x - 0.5) * rng.uniform(0.85, 1.15) + 0.5, 0.0, 1.0) * gain + bias
    x = np.clip(x, 0.0, 1.0) * v
    return (np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y),
            np.ascontiguousarray(v))


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor,
                  valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice (1 - Dice), both over valid pixels only."""
    w = valid.float()
    n = w.sum().clamp_min(1.0)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * w).sum() / n
    p = torch.sigmoid(logits) * w
    inter = (p * target).sum()
    dice = (2 * inter + 1.0) / (p.sum() + (target * w).sum() + 1.0)
    return bce + (1.0 - dice)


# -- data -------------------------------------------------------------------------------

class _CropSampler:
    """Random training crops of the train images (area-weighted), a batch ahead."""

    def __init__(self, sources: list[Any], size: int, batch: int, seed: int) -> None:
        self.sources, self.size, self.batch = sources, size, batch
        areas = np.array([s.width * s.height for s in sources], np.float64)
        self.p = areas / areas.sum()
        self.rng = np.random.default_rng(seed)
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="segexplain-crop")

    def _window(self, src: Any) -> PatchWindow:
        s = self.size
        r = int(self.rng.integers(0, max(src.height - s, 0) + 1))
        c = int(self.rng.integers(0, max(src.width - s, 0) + 1))
        return PatchWindow(r, c, s, min(s, src.height - r), min(s, src.width - c))

    def _read(self, jobs: list[tuple[Any, PatchWindow, int]]) -> tuple[np.ndarray, ...]:
        xs, ys, vs = [], [], []
        for src, win, seed in jobs:
            p = src.read(win)
            x, y, v = augment(p.image, p.label, p.valid, np.random.default_rng(seed))
            xs.append(x)
            ys.append(y)
            vs.append(v)
        return np.stack(xs), np.stack(ys).astype(np.float32), np.stack(vs)

    def _jobs(self) -> list[tuple[Any, PatchWindow, int]]:
        idx = self.rng.choice(len(self.sources), size=self.batch, p=self.p)
        return [(self.sources[i], self._window(self.sources[i]),
                 int(self.rng.integers(1 << 31))) for i in idx]

    def batches(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Endless augmented batches (x, y, valid)."""
        nxt = self.pool.submit(self._read, self._jobs())
        while True:
            cur = nxt.result()
            nxt = self.pool.submit(self._read, self._jobs())
            yield cur

    def close(self) -> None:
        """Stop the reader threads."""
        self.pool.shutdown(wait=True, cancel_futures=True)


def validation_counts(module: torch.nn.Module, sources: Sequence[Any], size: int,
                      batch: int = 8) -> dict[str, int]:
    """tp/fp/fn/tn of `module` over every patch of `sources` (valid pixels only)."""
    totals = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    module.eval()
    with torch.inference_mode():
        for src in sources:
            wins = src.windows(size, size, 0.0)
            for i in range(0, len(wins), batch):
                patches = [src.read(w) for w in wins[i:i + batch]]
                x = torch.from_numpy(np.stack([p.image for p in patches]))
                pred = (module(x)[:, 0] > 0).numpy()
                lab = np.stack([p.label for p in patches]).astype(bool)
                val = np.stack([p.valid for p in patches])
                totals["tp"] += int(np.count_nonzero(pred & lab & val))
                totals["fp"] += int(np.count_nonzero(pred & ~lab & val))
                totals["fn"] += int(np.count_nonzero(~pred & lab & val))
                totals["tn"] += int(np.count_nonzero(~pred & ~lab & val))
    return totals


# -- training ---------------------------------------------------------------------------

def _lr_factor(step: int, total_steps: int, elapsed: float, budget: float | None,
               warmup: int) -> float:
    frac = step / max(total_steps, 1)
    if budget:
        frac = max(frac, elapsed / budget)
    warm = min(1.0, (step + 1) / max(warmup, 1))
    return warm * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


def check_config(cfg: TrainConfig) -> None:
    """ConfigurationError for settings that cannot work."""
    if cfg.patch_size % 32 or cfg.val_patch_size % 32 or cfg.patch_size < 32:
        raise ConfigurationError(
            f"patch size {cfg.patch_size} / validation patch {cfg.val_patch_size} px: "
            "expected multiples of 32 (the encoder's output stride), e.g. --patch-size 256")
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise ConfigurationError(
            f"epochs {cfg.epochs}, batch size {cfg.batch_size}: expected >= 1 and >= 2")
    if cfg.minutes is not None and cfg.minutes <= 0:
        raise ConfigurationError(f"--minutes {cfg.minutes}: expected a positive number")


def train(train_pairs: Sequence[Any], val_pairs: Sequence[Any], cfg: TrainConfig, *,
          progress: Progress = NULL_PROGRESS,
          cancel: Any = None) -> tuple[LoadedModel, dict[str, Any]]:
    """Train a model from scratch; returns it (best validation epoch) and the log.

    `cancel`, when given, is a callable checked between steps; True cancels the run.
    """
    from .imagery import open_source

    check_config(cfg)
    if not train_pairs:
        raise EmptyInputError("no training images (split 'train'): check the data folder")
    labelled = [p for p in train_pairs if p.label is not None]
    if not labelled:
        raise EmptyInputError("the training images have no labels: training needs them")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    start = time.monotonic()
    budget = cfg.minutes * 60.0 if cfg.minutes else None
    train_src = [open_source(p, channels=cfg.in_channels, warn=progress) for p in labelled]
    val_src = [open_source(p, channels=cfg.in_channels, warn=progress)
               for p in val_pairs if p.label is not None]
    module = build_model(cfg.arch, cfg.encoder, cfg.in_channels, 1,
                         decoder_channels=tuple(cfg.decoder_channels))
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    px = sum(s.width * s.height for s in train_src)
    steps = cfg.steps_per_epoch or max(1, math.ceil(px / (cfg.patch_size ** 2 * cfg.batch_size)))
    total_steps = steps * cfg.epochs
    sampler = _CropSampler(train_src, cfg.patch_size, cfg.batch_size, cfg.seed)
    log: dict[str, Any] = {"config": cfg.to_dict(), "epochs": [], "train_images": len(train_src),
                           "val_images": len(val_src), "steps_per_epoch": steps}
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    step = 0
    try:
        batches = sampler.batches()
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.monotonic()
            module.train()
            progress.stage(f"epoch {epoch}/{cfg.epochs}", steps)
            losses = []
            for _ in range(steps):
                if cancel is not None and cancel():
                    raise CancelledError("training was cancelled; no model was written")
                f = _lr_factor(step, total_steps, time.monotonic() - start, budget,
                               cfg.warmup_steps)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * f
                x, y, v = (torch.from_numpy(a) for a in next(batches))
                loss = bce_dice_loss(module(x)[:, 0], y, v)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
                step += 1
                progress.advance()
                if budget and time.monotonic() - start > budget * 0.93:
                    break
            entry: dict[str, Any] = {"epoch": epoch, "steps": len(losses),
                                     "loss": float(np.mean(losses)), "lr": cfg.lr * f}
            last = epoch == cfg.epochs or bool(budget and time.monotonic() - start > budget * 0.93)
            if val_src and (epoch % cfg.val_every == 0 or last):
                c = validation_counts(module, val_src, cfg.val_patch_size)
                entry["val_iou"] = overall_iou(c["tp"], c["fp"], c["fn"])
                entry["val_accuracy"] = (c["tp"] + c["tn"]) / max(sum(c.values()), 1)
                if best is None or entry["val_iou"] > best[0]:
                    best = (entry["val_iou"], {k: t.detach().clone()
                                               for k, t in module.state_dict().items()})
            entry["seconds"] = round(time.monotonic() - t0, 2)
            entry["elapsed"] = round(time.monotonic() - start, 2)
            log["epochs"].append(entry)
            iou = entry.get("val_iou")
            progress.log(f"epoch {epoch}: loss {entry['loss']:.4f}"
                         + (f", val IoU {iou:.4f}" if iou is not None else "")
                         + f" ({entry['seconds']:.0f} s)")
            if last:
                break
    finally:
        sampler.close()
        for s in train_src + val_src:
            s.close()
    if best is not None:
        module.load_state_dict(best[1])
        log["best_val_iou"] = best[0]
        log["best_epoch"] = max((e for e in log["epochs"] if "val_iou" in e),
                                key=lambda e: e["val_iou"])["epoch"]
    log["seconds"] = round(time.monotonic() - start, 2)
    module.eval()
    return as_loaded(module), log


def preset(name: str, **overrides: Any) -> TrainConfig:
    """A copy of preset `name` with `overrides` (None values ignored)."""
    if name not in PRESETS:
        raise ConfigurationError(
            f"preset {name!r} is unknown: expected one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
