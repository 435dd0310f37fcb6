"""`segexplain estimate`: place a new region in a reference bundle's space, estimate IoU."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from ..figures import format_number, nanmean_or_none
from ..progress import Progress
from ..scale.run import add_arguments, scaled_run
from ._common import add_model_arguments

HELP = "estimate IoU and novelty of a new region against a reference analysis bundle"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `segexplain estimate`."""
    parser.add_argument("--data", required=True, type=Path,
                        help="imagery of the new region (folder or one GeoTIFF); labels are "
                             "used for scoring the estimate when found, never for estimating")
    parser.add_argument("--labels", type=Path, default=None,
                        help="label raster / vector (or folder) when not next to the images")
    parser.add_argument("--reference", required=True, type=Path,
                        help="analysis bundle (.segx) of the model's training data")
    add_model_arguments(parser)  # the model the reference bundle was made with
    parser.add_argument("--out", required=True, type=Path, help="bundle to write, NAME.segx")
    parser.add_argument("--encoder-only", action="store_true",
                        help="skip the decoder: faster, no prediction, latent-only estimate")
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="inference backend (auto: CUDA if present, else onnxruntime)")
    parser.add_argument("--batch-size", type=int, default=None, help="patches per batch")
    add_arguments(parser)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Discover -> engine -> reference space -> estimate bundle; returns the figures."""
    from ..analytics.apply import estimate_table
    from ..bundle.manifest import write_estimate
    from ..bundle.reader import Bundle
    from ..bundle.writer import BundleWriter
    from ..data.datasets import discover
    from ..engine.inference import analyze_images
    from ..engine.settings import EngineSettings
    from ..errors import ConfigurationError
    from ._common import load, print_scores, versions
    from ._validity import region_lines

    start = time.perf_counter()
    ref = Bundle(args.reference)
    rm = ref.manifest
    pairs = [dataclasses.replace(p, split="new")
             for p in discover(args.data, args.labels, require_labels=False)]
    n_labelled = sum(p.label is not None for p in pairs)
    use = ("not used in encoder-only mode" if args.encoder_only
           else "used only to score the estimate")
    progress.log(f"{len(pairs)} image(s) under {args.data} ({n_labelled} with labels, {use})")
    model = load(args, progress)
    ref_sha = (rm.get("model") or {}).get("sha256")
    if ref_sha and model.sha256 and ref_sha != model.sha256:
        raise ConfigurationError(
            f"model {args.model} (sha256 {model.sha256[:12]}) is not the model of reference "
            f"{ref.path.name} (sha256 {ref_sha[:12]}, {rm['model'].get('path')}): estimate "
            "with the reference's model, or analyse the training data with this one")
    settings = EngineSettings(patch_size=int(rm["patch_size"]), stride=int(rm["stride"]),
                              iou_convention=rm["iou_convention"], backend=args.backend,
                              batch_size=args.batch_size, encoder_only=args.encoder_only)
    with BundleWriter(args.out) as writer, scaled_run(args, progress) as tiled:
        table = (tiled.analyze(pairs, model, settings, writer.raster_dir) if tiled else
                 analyze_images(pairs, model, settings, raster_dir=writer.raster_dir,
                                progress=progress))
        progress.stage("estimate", 0)
        est = estimate_table(table, ref)
        progress.stage("write bundle", 0)
        run_info = {
            "model": model.info(), "data": str(Path(args.data).resolve()),
            "patch_size": int(rm["patch_size"]), "stride": int(rm["stride"]),
            "encoder_only": bool(args.encoder_only), "backend": args.backend,
            "versions": versions(),
        }
        manifest = write_estimate(writer, est, ref, run_info)
        out = writer.finish(manifest)
    nov = manifest["novelty"]
    progress.log(f"estimated IoU ({est.estimator} estimator): mean "
                 f"{format_number(nanmean_or_none(est.est_iou))} over {len(table)} patches; "
                 f"novelty: mean percentile {format_number(nov.get('mean'))}, "
                 f"{format_number(100 * (nov.get('share_above_95') or 0))}"
                 "% of patches beyond the reference's 95th percentile")
    if est.novelty_auroc is not None:
        progress.log(f"novelty AUROC, these patches vs the reference's val patches: "
                     f"{est.novelty_auroc:.3f}")
    if est.scores:
        print_scores(progress, "estimate vs real IoU", est.scores)
    for line in region_lines(est.region):
        progress.log(line)
    progress.log(f"wrote {out}")
    return {"bundle": str(out), "kind": "estimate", "n_patches": len(table),
            "estimator": est.estimator, "mean_est_iou": nanmean_or_none(est.est_iou),
            "novelty_mean": nov.get("mean"), "novelty_auroc": est.novelty_auroc,
            "scores": est.scores, "region": est.region,
            "seconds": round(time.perf_counter() - start, 2)}
