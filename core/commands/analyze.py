"""`segexplain analyze`: run the model over a labelled data set and write an analysis bundle."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from ..engine.records import IOU_CONVENTION_QUESTION, IOU_CONVENTIONS, describe_convention
from ..figures import format_number
from ..progress import Progress
from ..scale.run import add_arguments, scaled_run
from ._common import add_model_arguments

HELP = "analyse a labelled data set with a model and write an analysis bundle (.segx)"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `segexplain analyze`."""
    parser.add_argument("--data", required=True, type=Path,
                        help="data folder (images/ + gt/ or labels/) or one GeoTIFF")
    parser.add_argument("--labels", type=Path, default=None,
                        help="label raster / vector (or folder) when not next to the images")
    add_model_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="bundle to write, NAME.segx")
    parser.add_argument("--patch-size", type=int, default=256, help="patch size in pixels")
    parser.add_argument("--stride", type=int, default=None,
                        help="step between patches in pixels (default: the patch size)")
    parser.add_argument("--iou-convention", choices=IOU_CONVENTIONS, default="zero",
                        help=f"{IOU_CONVENTION_QUESTION}: " + "; ".join(
                            describe_convention(c) for c in IOU_CONVENTIONS))
    parser.add_argument("--backend", choices=("auto", "torch", "onnx"), default="auto",
                        help="inference backend (auto: CUDA if present, else onnxruntime)")
    parser.add_argument("--batch-size", type=int, default=None, help="patches per batch")
    parser.add_argument("--clusters-max", type=int, default=20,
                        help="largest k of the KMeans silhouette sweep (from 2)")
    parser.add_argument("--components", type=int, default=50,
                        help="PCA components kept for distances (<= 50 recommended)")
    parser.add_argument("--folds", type=int, default=5,
                        help="cross-validation folds (grouped by image)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    add_arguments(parser)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Discover -> engine -> analytics -> bundle; returns the headline figures."""
    from ..analytics.fit import analyze_table
    from ..bundle.manifest import write_analysis
    from ..bundle.writer import BundleWriter
    from ..data.datasets import discover
    from ..engine.inference import analyze_images
    from ..engine.settings import EngineSettings
    from ..errors import ConfigurationError
    from ..model.spec import is_onnx
    from ._common import load, print_scores, require, versions

    needs = {"sklearn": "scikit-learn", "scipy": "scipy"}
    if not is_onnx(args.model):  # a model folder or checkpoint runs on torch
        needs |= {"torch": "torch", "segmentation_models_pytorch": "segmentation-models-pytorch"}
    require("analyze", needs, "PCA, IoU estimators and clusters; torch runs a model folder")
    if args.clusters_max < 2:
        raise ConfigurationError(f"--clusters-max {args.clusters_max}: expected at least 2")
    if not 2 <= args.components <= 512:
        raise ConfigurationError(f"--components {args.components}: expected 2 to 512")
    if args.folds < 2:
        raise ConfigurationError(f"--folds {args.folds}: expected at least 2")
    start = time.perf_counter()
    pairs = discover(args.data, args.labels, require_labels=True)
    progress.log(f"{len(pairs)} image(s) under {args.data}")
    model = load(args, progress)
    settings = EngineSettings(patch_size=args.patch_size, stride=args.stride,
                              iou_convention=args.iou_convention, backend=args.backend,
                              batch_size=args.batch_size)
    with BundleWriter(args.out) as writer, scaled_run(args, progress) as tiled:
        table = (tiled.analyze(pairs, model, settings, writer.raster_dir) if tiled else
                 analyze_images(pairs, model, settings, raster_dir=writer.raster_dir,
                                progress=progress))
        res = analyze_table(table, n_components=args.components,
                            clusters_max=args.clusters_max, seed=args.seed,
                            folds=args.folds, progress=progress)
        for note in res.notes:
            progress.log(note, level="warning")
        progress.stage("write bundle", 0)
        run_info = {
            "model": model.info(), "data": str(Path(args.data).resolve()),
            "patch_size": args.patch_size, "stride": args.stride or args.patch_size,
            "backend": args.backend, "seed": args.seed, "versions": versions(),
        }
        manifest = write_analysis(writer, res, run_info)
        out = writer.finish(manifest)
    overall = manifest["stats"]["overall"]
    progress.log(f"overall IoU {format_number(overall.get('overall_iou'), percent=True)}, "
                 f"accuracy {format_number(overall.get('accuracy'), percent=True)}, mean patch "
                 f"IoU {format_number(overall.get('mean_patch_iou'), percent=True)} "
                 f"({len(table)} patches, IoU convention "
                 f"{describe_convention(table.iou_convention)})")
    print_scores(progress, "cross-validated estimator", manifest["estimators"])
    progress.log(f"wrote {out}")
    return {
        "bundle": str(out), "kind": "analysis", "n_patches": len(table),
        "overall": overall,
        "estimators": {k: {m: v.get(m) for m in ("mae", "r2", "spearman", "folds")}
                       for k, v in manifest["estimators"].items()},
        "clustering": {k: manifest.get("clustering", {}).get(k)
                       for k in ("method", "k", "silhouette")},
        "seconds": round(time.perf_counter() - start, 2),
    }
