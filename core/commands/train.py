"""`segexplain train`: train a U-Net from scratch; writes an smp model folder + training log."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..progress import Progress

HELP = "train a U-Net from scratch on a labelled data set (writes an smp model folder)"


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of the command."""
    p.add_argument("--data", required=True, type=Path,
                   help="data folder (train and val splits, e.g. `segexplain sample-data`)")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--preset", choices=("demo", "tiny"), default="demo",
                   help="demo: the sample data in about 10 min on 2 quiet cores; tiny: seconds, "
                        "for tests")
    p.add_argument("--encoder", default=None, help="smp encoder (preset decides)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (preset decides)")
    p.add_argument("--patch-size", type=int, default=None,
                   help="training crop in px, a multiple of 32 (preset decides)")
    p.add_argument("--batch-size", type=int, default=None, help="crops per step")
    p.add_argument("--steps-per-epoch", type=int, default=None,
                   help="optimiser steps per epoch (default: preset, or one pass over the data)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate")
    p.add_argument("--in-channels", type=int, default=None, help="image bands the model takes")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads, fixed for the run (default: the usable cores); "
                        "the same seed and thread count give the same weights")
    p.add_argument("--seed", type=int, default=None, help="random seed")


def _replaceable(out: Path) -> bool:
    return not out.exists() or (out.is_dir() and (
        (out / "config.json").is_file() or not any(out.iterdir())))


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Train; returns the model folder, validation IoU and seconds."""
    from ..model.spec import require_torch

    require_torch("train")
    from ..data.datasets import discover
    from ..errors import ConfigurationError
    from ..model.models import save_model
    from ..model.training import preset, train

    out: Path = args.out
    if not _replaceable(out):
        raise ConfigurationError(
            f"--out {out} exists and is not a model folder; choose a new folder name")
    cfg = preset(args.preset, encoder=args.encoder, epochs=args.epochs,
                 patch_size=args.patch_size, batch_size=args.batch_size,
                 steps_per_epoch=args.steps_per_epoch, lr=args.lr,
                 in_channels=args.in_channels, threads=args.threads, seed=args.seed)
    pairs = discover(args.data, require_labels=True)
    tr = [p for p in pairs if p.split == "train"]
    va = [p for p in pairs if p.split == "val"]
    if not va:
        progress.log(f"{args.data}: no validation images (split 'val'); no validation IoU",
                     level="warning")
    progress.log(f"training {cfg.arch}/{cfg.encoder} on {len(tr)} image(s), "
                 f"validating on {len(va)}")
    model, log = train(tr, va, cfg, progress=progress)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, tmp)
    (tmp / "training_log.json").write_text(json.dumps(log, indent=1) + "\n")
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    result = {"model": str(out), "encoder": cfg.encoder,
              "val_iou": log.get("val_iou"), "best_epoch": log.get("best_epoch"),
              "seconds": log["seconds"], "epochs": len(log["epochs"]),
              "steps": log["steps"], "threads": log["threads"]}
    progress.log(f"model written to {out} (val IoU "
                 f"{log.get('val_iou', float('nan')):.4f}, {log['seconds']:.0f} s)")
    return result
