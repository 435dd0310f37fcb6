"""Train a U-Net from scratch on any data set the data layer serves.

Training samples random square crops from the "train" images (read window by window
through `imagery.open_source`, a batch ahead in reader threads), with augmentation
(horizontal / vertical flips, 90 degree rotations, brightness and contrast jitter). The
loss is BCE (building pixels weighed by `pos_weight`) + soft Dice over valid pixels;
AdamW with a linear warm-up then a cosine decay to ~0 over a fixed number of optimiser
steps (`epochs` x `steps_per_epoch`): the run's length is counted in steps, never in
seconds. After every epoch the model predicts the "val" patches (all, or an evenly
spread subset of `val_patches`) and logs the overall IoU (total intersection over total
union).

An exponential moving average of the weights and batch-norm statistics (`ema_decay`)
follows the optimiser; it is what gets validated and saved, and it smooths away most of
the step-to-step noise of a short, high learning-rate run. With `keep_best` the weights
of the epoch with the best validation IoU are kept, else those of the last epoch; the
run's `val_iou` is the overall IoU of the kept weights over every val patch (the kept
epoch is chosen on that split, so the figure is slightly optimistic).

Presets (`PRESETS`): "demo" (the built-in sample data, about 10 minutes on a quiet
2-core machine) and "tiny" (seconds; for tests and smoke runs).

Determinism: the same configuration and seed give bit-identical weights whatever the
machine's load. Crops, augmentation and initial weights come from seeded generators in
a fixed order; the step count is fixed; and the intra-op thread count is fixed for the
whole run (`threads`, default: the cores this process may use, never the current load),
because the number of threads sets how CPU kernels split their sums, and so the last
bits of every float. On a busy machine the run is slower, never different.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the conventional alias

from ..data.windows import PatchWindow
from ..errors import CancelledError, ConfigurationError, EmptyInputError
from ..figures import overall_iou
from ..progress import NULL_PROGRESS, Progress
from .models import LoadedModel, as_loaded, build_model


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
    seed: int = 0
    threads: int | None = None
    val_every: int = 1
    val_patches: int | None = 32     # per-epoch validation subset; None: every val patch
    pos_weight: float = 1.0          # cross-entropy weight of building pixels
    ema_decay: float = 0.995         # weight averaging per step; 0 turns it off
    keep_best: bool = True           # keep the epoch with the best validation IoU

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d


#: optimiser steps of the demo preset (a multiple of its 100 steps per epoch)
DEMO_STEPS = 1600

PRESETS: dict[str, TrainConfig] = {
    # sample data (5 regions x 3 training tiles of 1024 px): a light RegNetX-200MF U-Net,
    # 192 px crops, weight averaging, every val patch per epoch; DEMO_STEPS optimiser
    # steps (about 10 minutes on a quiet 2-core machine, see README)
    "demo": TrainConfig(encoder="tu-regnetx_002", decoder_channels=(64, 32, 16, 16, 8),
                        epochs=DEMO_STEPS // 100, patch_size=192, batch_size=8,
                        steps_per_epoch=100, lr=5e-3, warmup_steps=60, val_patches=None,
                        pos_weight=2.0),
    # seconds: a model that runs end to end, not one that segments well
    "tiny": TrainConfig(encoder="resnet18", decoder_channels=(32, 16, 16, 8, 8),
                        epochs=2, patch_size=64, val_patch_size=128, batch_size=4,
                        steps_per_epoch=4, lr=3e-3, warmup_steps=1),
}


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), independent of the current load."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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


def bce_dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                  pos_weight: float = 1.0) -> torch.Tensor:
    """Binary cross-entropy + soft Dice (1 - Dice), both over valid pixels only.

    `pos_weight` > 1 weighs the cross-entropy of building pixels up (favours recall).
    """
    w = valid.float()
    n = w.sum().clamp_min(1.0)
    pw = torch.tensor(pos_weight, dtype=logits.dtype) if pos_weight != 1.0 else None
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none",
                                              pos_weight=pw) * w).sum() / n
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

    def _window(self, src: Any, rng: np.random.Generator | None = None) -> PatchWindow:
        s = self.size
        rng = rng or self.rng
        r = int(rng.integers(0, max(src.height - s, 0) + 1))
        c = int(rng.integers(0, max(src.width - s, 0) + 1))
        return PatchWindow(r, c, s, min(s, src.height - r), min(s, src.width - c))

    def _read(self, jobs: list[tuple[Any, PatchWindow, int]]) -> tuple[np.ndarray, ...]:
        xs, ys, vs = [], [], []
        for src, win, seed in jobs:
            p = src.read(win)
            if seed % 2:  # every other crop: the busier of two candidates (fewer empty crops)
                q = src.read(self._window(src, np.random.default_rng(seed)))
                if q.label is not None and p.label is not None and \
                        int(q.label.sum()) > int(p.label.sum()):
                    p = q
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


def validation_windows(sources: Sequence[Any], size: int,
                       limit: int | None = None) -> list[tuple[Any, PatchWindow]]:
    """Every (source, window) of the val images, or an evenly spread subset of `limit`."""
    jobs = [(src, w) for src in sources for w in src.windows(size, size, 0.0)]
    if limit is not None and len(jobs) > limit:
        idx = np.linspace(0, len(jobs) - 1, limit).round().astype(int)
        jobs = [jobs[i] for i in idx]
    return jobs


def validation_counts(module: torch.nn.Module, jobs: Sequence[tuple[Any, PatchWindow]],
                      batch: int = 8) -> dict[str, int]:
    """tp/fp/fn/tn of `module` over the (source, window) jobs (valid pixels only)."""
    totals = {"tp": 0, "fp": 0, "fn": 0, "tn": 0}
    module.eval()
    with torch.inference_mode():
        for i in range(0, len(jobs), batch):
            patches = [src.read(w) for src, w in jobs[i:i + batch]]
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

def lr_factor(step: int, total_steps: int, warmup: int) -> float:
    """Learning-rate multiplier at `step`: linear warm-up, then cosine to 0.005."""
    frac = step / max(total_steps, 1)
    warm = min(1.0, (step + 1) / max(warmup, 1))
    return warm * (0.005 + 0.995 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


class WeightAverage:
    """Exponential moving average of a module's parameters and buffers.

    `update` after every optimiser step; the decay ramps up as (1 + n) / (10 + n) so the
    first steps are not dominated by the random initialisation. Integer buffers (batch
    counts) are copied.
    """

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.module = copy.deepcopy(module).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        pairs = list(zip(self.module.state_dict().values(), module.state_dict().values(),
                         strict=True))
        self._float = [(a, b) for a, b in pairs if a.is_floating_point()]
        self._other = [(a, b) for a, b in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the live weights."""
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        torch._foreach_lerp_([a for a, _ in self._float], [b for _, b in self._float], 1.0 - d)
        for a, b in self._other:
            a.copy_(b)


def check_config(cfg: TrainConfig) -> None:
    """ConfigurationError for settings that cannot work."""
    if cfg.patch_size % 32 or cfg.val_patch_size % 32 or cfg.patch_size < 32:
        raise ConfigurationError(
            f"patch size {cfg.patch_size} / validation patch {cfg.val_patch_size} px: "
            "expected multiples of 32 (the encoder's output stride), e.g. --patch-size 256")
    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise ConfigurationError(
            f"epochs {cfg.epochs}, batch size {cfg.batch_size}: expected >= 1 and >= 2")
    if cfg.threads is not None and cfg.threads < 1:
        raise ConfigurationError(f"threads {cfg.threads}: expected at least 1")


def train(train_pairs: Sequence[Any], val_pairs: Sequence[Any], cfg: TrainConfig, *,
          progress: Progress = NULL_PROGRESS,
          cancel: Any = None) -> tuple[LoadedModel, dict[str, Any]]:
    """Train a model from scratch; returns it and the log (per-epoch loss, val IoU, seconds).

    `cancel`, when given, is a callable checked between steps; True cancels the run.
    """
    from ..data.imagery import open_source

    check_config(cfg)
    if not train_pairs:
        raise EmptyInputError("no training images (split 'train'): check the data folder")
    labelled = [p for p in train_pairs if p.label is not None]
    if not labelled:
        raise EmptyInputError("the training images have no labels: training needs them")
    threads = int(cfg.threads or usable_cores())
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    start = time.monotonic()
    cpu_start = time.process_time()
    train_src = [open_source(p, channels=cfg.in_channels, warn=progress) for p in labelled]
    val_src = [open_source(p, channels=cfg.in_channels, warn=progress)
               for p in val_pairs if p.label is not None]
    module = build_model(cfg.arch, cfg.encoder, cfg.in_channels, 1,
                         decoder_channels=tuple(cfg.decoder_channels))
    module = module.to(memory_format=torch.channels_last)  # 1.3x faster convs on CPU
    ema = WeightAverage(module, cfg.ema_decay) if cfg.ema_decay > 0 else None
    kept = ema.module if ema is not None else module       # what is validated and saved
    opt = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    px = sum(s.width * s.height for s in train_src)
    steps = cfg.steps_per_epoch or max(1, math.ceil(px / (cfg.patch_size ** 2 * cfg.batch_size)))
    total_steps = steps * cfg.epochs
    sampler = _CropSampler(train_src, cfg.patch_size, cfg.batch_size, cfg.seed)
    log: dict[str, Any] = {"config": cfg.to_dict(), "epochs": [], "train_images": len(train_src),
                           "val_images": len(val_src), "steps_per_epoch": steps,
                           "threads": threads}
    val_jobs = validation_windows(val_src, cfg.val_patch_size, cfg.val_patches)
    all_jobs = validation_windows(val_src, cfg.val_patch_size)
    best: tuple[float, int, dict[str, torch.Tensor], dict[str, int]] | None = None
    step = 0
    try:
        batches = sampler.batches()
        for epoch in range(1, cfg.epochs + 1):
            t0, c0 = time.monotonic(), time.process_time()
            module.train()
            progress.stage(f"epoch {epoch}/{cfg.epochs}", steps)
            losses = []
            for _ in range(steps):
                if cancel is not None and cancel():
                    raise CancelledError("training was cancelled; no model was written")
                f = lr_factor(step, total_steps, cfg.warmup_steps)
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * f
                x, y, v = (torch.from_numpy(a) for a in next(batches))
                x = x.contiguous(memory_format=torch.channels_last)
                loss = bce_dice_loss(module(x)[:, 0], y, v, cfg.pos_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if ema is not None:
                    ema.update()
                losses.append(float(loss.detach()))
                step += 1
                progress.advance()
            entry: dict[str, Any] = {"epoch": epoch, "steps": len(losses),
                                     "loss": float(np.mean(losses)), "lr": cfg.lr * f}
            entry["train_seconds"] = round(time.monotonic() - t0, 2)
            entry["train_cpu_seconds"] = round(time.process_time() - c0, 2)
            last = epoch == cfg.epochs
            if val_src and (epoch % cfg.val_every == 0 or last):
                c = validation_counts(kept, val_jobs)
                entry["val_iou"] = overall_iou(c["tp"], c["fp"], c["fn"])
                entry["val_accuracy"] = (c["tp"] + c["tn"]) / max(sum(c.values()), 1)
                entry["val_patches"] = len(val_jobs)
                if cfg.keep_best and (best is None or entry["val_iou"] > best[0]):
                    state = {k: t.detach().clone() for k, t in kept.state_dict().items()}
                    best = (entry["val_iou"], epoch, state, c)
            entry["seconds"] = round(time.monotonic() - t0, 2)
            entry["cpu_seconds"] = round(time.process_time() - c0, 2)
            entry["elapsed"] = round(time.monotonic() - start, 2)
            log["epochs"].append(entry)
            iou = entry.get("val_iou")
            progress.log(f"epoch {epoch}: loss {entry['loss']:.4f}"
                         + (f", val IoU {iou:.4f}" if iou is not None else "")
                         + f" ({entry['seconds']:.0f} s)")
        if best is not None:
            kept.load_state_dict(best[2])
            log["best_epoch"] = best[1]
        if val_src:  # the figure that counts: every validation patch, the kept weights
            if best is not None and len(val_jobs) == len(all_jobs):
                c = best[3]
            else:
                progress.stage("validate", 0)
                c = validation_counts(kept, all_jobs)
            log["val_iou"] = overall_iou(c["tp"], c["fp"], c["fn"])
            log["val_accuracy"] = (c["tp"] + c["tn"]) / max(sum(c.values()), 1)
            log["val_counts"] = c
    finally:
        sampler.close()
        for s in train_src + val_src:
            s.close()
        torch.set_num_threads(previous_threads)
    log["steps"] = step
    log["seconds"] = round(time.monotonic() - start, 2)
    log["cpu_seconds"] = round(time.process_time() - cpu_start, 2)
    module = kept.to(memory_format=torch.contiguous_format).eval()
    return as_loaded(module), log


def preset(name: str, **overrides: Any) -> TrainConfig:
    """Return a copy of preset `name` with `overrides` (None values ignored)."""
    if name not in PRESETS:
        raise ConfigurationError(
            f"preset {name!r} is unknown: expected one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})
