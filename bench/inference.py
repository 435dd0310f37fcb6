"""Inference benchmark: pipeline overhead, back ends, encoder-only, memory vs raster size.

Run: .venv/bin/python bench/inference.py [--quick] [--threads N] [--batch N]

Prints a human table, and as its last line one JSON object:

- pipeline_vs_bare: patches/s of `analyze_images` (read + normalise + forward + capture +
  score + stitch + thumbnails) over a bare forward loop on in-memory tensors, same back
  end (the one "auto" picks: CUDA, else onnxruntime), batch and threads;
- ort_vs_torch: bare onnxruntime over bare eager PyTorch, both on CPU;
- encoder_vs_full: bare encoder-only over bare full forward (auto back end);
- rss_20k_vs_5k: peak RSS of analysing a 20000 x 20000 px image over a 5000 x 5000 one,
  each in a fresh subprocess, full model with stitched prediction and confusion rasters.
  Both images hold the same few valid blocks (`--rss-patches` patches) in a sea of
  nodata, so the two runs do the same model work and differ only in raster size:
  windows, validity scan, stitching strips and the 400 Mpx output rasters;
- gflops_per_s and patches_per_s per back end and device.

Model: ResNet-34 U-Net (smp defaults, random init), 256 px patches (--quick: ResNet-18,
64 px, small images; for smoke tests). Each throughput is the best of `--repeats`
interleaved runs, so a burst of load from other processes on a shared machine does
not decide a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_pair(folder: Path, name: str, size: int, valid_blocks: list[tuple[int, int]],
               block: int, seed: int = 0) -> object:
    """A sparse GeoTIFF pair: `valid_blocks` (row, col) of `block` px hold data, the rest
    is nodata (never written: GDAL's SPARSE_OK keeps the file small)."""
    import rasterio
    from rasterio.crs import CRS
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from segexplain.core.data.datasets import ImagePair

    rng = np.random.default_rng(seed)
    prof = {"driver": "GTiff", "width": size, "height": size, "crs": CRS.from_epsg(32633),
            "transform": from_origin(400000.0, 5400000.0, 0.3, 0.3), "tiled": True,
            "blockxsize": 256, "blockysize": 256, "compress": "deflate", "sparse_ok": True}
    ip, lp = folder / f"{name}.tif", folder / f"{name}_label.tif"
    with rasterio.open(ip, "w", count=3, dtype="uint8", nodata=0, **prof) as img, \
            rasterio.open(lp, "w", count=1, dtype="uint8", **prof) as lab:
        for r, c in valid_blocks:
            mask = np.zeros((block, block), np.uint8)
            for _ in range(max(1, block // 16)):
                y, x = rng.integers(0, block - 16, 2)
                mask[y:y + rng.integers(8, 16), x:x + rng.integers(8, 16)] = 1
            data = rng.integers(40, 120, (3, block, block)).astype(np.uint8)
            data[:, mask == 1] += 100
            win = Window(c * block, r * block, block, block)
            img.write(data, window=win)
            lab.write(mask[None] * 255, window=win)
    return ImagePair(image=ip, label=lp, region="bench", split="val", name=name)


def make_model(quick: bool) -> object:
    import torch
    from segexplain.core.model.models import as_loaded, build_model

    torch.manual_seed(0)
    return as_loaded(build_model("unet", "resnet18" if quick else "resnet34", 3, 1).eval())


def flops_per_patch(model: object, size: int, encoder_only: bool) -> float:
    """FLOPs of one forward pass on one patch (torch's flop counter, 2 per MAC)."""
    import torch
    from segexplain.core.model.models import EncoderNet, ExplainNet
    from torch.utils.flop_counter import FlopCounterMode

    net = (EncoderNet(model.module) if encoder_only else ExplainNet(model.module)).eval()
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        net(torch.zeros(1, model.in_channels, size, size))
    return float(fc.get_total_flops())


def bare_rate(backend: object, x: np.ndarray, n_batches: int) -> float:
    """Patches/s of backend.run on an in-memory batch (after one warm-up batch)."""
    backend.run(x)
    t = time.perf_counter()
    for _ in range(n_batches):
        backend.run(x)
    return n_batches * len(x) / (time.perf_counter() - t)


def pipeline_rate(pairs: list, model: object, backend: object, size: int, batch: int,
                  threads: int, out: Path) -> tuple[float, int]:
    from segexplain.core.engine.inference import analyze_images
    from segexplain.core.engine.settings import EngineSettings

    settings = EngineSettings(patch_size=size, batch_size=batch, threads=threads)
    t = time.perf_counter()
    table = analyze_images(pairs, model, settings, raster_dir=out, backend=backend)
    return len(table) / (time.perf_counter() - t), len(table)


def rss_child(args: argparse.Namespace) -> None:
    """Subprocess body: analyse one sparse image, print peak RSS (MiB) as JSON."""
    from segexplain.core.engine.inference import analyze_images
    from segexplain.core.engine.settings import EngineSettings

    model = make_model(args.quick)
    work = Path(args.rss_child_dir)
    size, block = args.rss_child_size, args.patch
    n = args.rss_patches
    side = int(np.ceil(np.sqrt(n)))
    step = max(1, (size // block) // side)
    blocks = [((i // side) * step, (i % side) * step) for i in range(n)]
    pair = write_pair(work, f"img{size}", size, blocks, block)
    t = time.perf_counter()
    settings = EngineSettings(patch_size=block, backend=args.backend, batch_size=args.batch,
                              threads=args.threads)
    table = analyze_images([pair], model, settings, raster_dir=work / "rasters")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"size": size, "patches": len(table), "rss_mib": rss,
                      "seconds": time.perf_counter() - t}))


def run_rss(args: argparse.Namespace, size: int, work: Path) -> dict:
    d = work / f"rss{size}"
    d.mkdir()
    cmd = [sys.executable, __file__, "--rss-child-size", str(size), "--rss-child-dir", str(d),
           "--rss-patches", str(args.rss_patches), "--batch", str(args.batch),
           "--threads", str(args.threads), "--backend", args.backend]
    if args.quick:
        cmd.append("--quick")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT.parent), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"RSS run of {size} px failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke test: tiny sizes")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads")
    p.add_argument("--batch", type=int, default=None, help="patches per batch")
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (best kept)")
    p.add_argument("--rss-patches", type=int, default=None, help="valid patches per RSS image")
    p.add_argument("--backend", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--rss-child-size", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--rss-child-dir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    import torch
    from segexplain.core.model.backends import (
        TorchBackend,
        default_threads,
        make_backend,
        resolve_backend,
    )

    args.patch = 64 if args.quick else 256
    args.threads = args.threads or default_threads()
    cuda = torch.cuda.is_available()
    args.batch = args.batch or (4 if args.quick else 8)
    args.rss_patches = args.rss_patches or (4 if args.quick else 48)
    if args.rss_child_size:
        rss_child(args)
        return
    repeats = args.repeats or (1 if args.quick else 2)
    n_batches = 2 if args.quick else 4
    torch.set_num_threads(args.threads)
    model = make_model(args.quick)
    s, b = args.patch, args.batch
    cpu_b = b
    auto = resolve_backend("auto")
    x = np.random.default_rng(0).random((b, 3, s, s), dtype=np.float32)
    t_start = time.perf_counter()

    backends = {
        ("torch", False): TorchBackend(model, device="cpu", threads=args.threads),
        ("torch", True): TorchBackend(model, device="cpu", threads=args.threads,
                                      encoder_only=True),
        ("onnx", False): make_backend(model, "onnx", patch_size=s, threads=args.threads),
        ("onnx", True): make_backend(model, "onnx", patch_size=s, threads=args.threads,
                                     encoder_only=True),
    }
    if cuda:
        backends[("cuda", False)] = make_backend(model, "cuda", patch_size=s)
        backends[("cuda", True)] = make_backend(model, "cuda", patch_size=s, encoder_only=True)
        args.batch = b = max(b, min(64, backends[("cuda", False)].suggest_batch_size(3, s)))
    x_cpu = x[:cpu_b]
    if cuda:
        x = np.random.default_rng(0).random((b, 3, s, s), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="segexplain-bench-") as tmp:
        work = Path(tmp)
        # the pipeline image: 4 x (2 * batch / 4) patches, all valid
        cols = 4
        rows = max(1, (n_batches * b) // cols)
        img_dir = work / "pipe"
        img_dir.mkdir()
        blocks = [(r, c) for r in range(rows) for c in range(cols)]
        pipe_pair = write_pair(img_dir, "pipe", max(rows, cols) * s, blocks, s)
        rates: dict[str, float] = {}
        auto_key = {"cuda": "cuda", "onnx": "onnx", "cpu": "torch"}[auto]
        for rep in range(repeats):
            for (kind, enc), be in backends.items():
                key = f"{kind}{'-encoder' if enc else ''}"
                xb = x if kind == "cuda" else x_cpu
                rates[key] = max(rates.get(key, 0.0), bare_rate(be, xb, n_batches))
            # the CPU torch pipeline too, except on a GPU machine (its image is GPU-sized)
            for kind in sorted({auto_key} if cuda else {auto_key, "torch"}):
                r, npatch = pipeline_rate([pipe_pair], model, backends[(kind, False)],
                                          s, b if kind == "cuda" else len(x_cpu),
                                          args.threads, work / f"out{rep}{kind}")
                rates[f"pipeline-{kind}"] = max(rates.get(f"pipeline-{kind}", 0.0), r)
        rss = {size: run_rss(args, size, work) for size in
               ((512, 2048) if args.quick else (5000, 20000))}
    flops_full = flops_per_patch(model, s, False)
    flops_enc = flops_per_patch(model, s, True)
    device = {"torch": "cpu", "onnx": "cpu", "cuda": torch.cuda.get_device_name(0)
              if cuda else None}
    per_backend = {}
    for key, rate in rates.items():
        if key.startswith("pipeline"):
            continue
        kind = key.split("-")[0]
        f = flops_enc if key.endswith("encoder") else flops_full
        per_backend[key] = {"device": device[kind], "patches_per_s": round(rate, 2),
                            "gflops_per_s": round(rate * f / 1e9, 1)}
    small, big = rss[min(rss)], rss[max(rss)]
    pipe_key = f"pipeline-{auto_key}"
    result = {
        "quick": args.quick, "model": f"unet-{'resnet18' if args.quick else 'resnet34'}",
        "patch_size": s, "batch": b, "threads": args.threads, "auto_backend": auto,
        "pipeline_vs_bare": round(rates[pipe_key] / rates[auto_key], 3),
        "ort_vs_torch": round(rates["onnx"] / rates["torch"], 3),
        "encoder_vs_full": round(rates[f"{auto_key}-encoder"] / rates[auto_key], 3),
        "rss_20k_vs_5k": round(big["rss_mib"] / small["rss_mib"], 3),
        "rss_mib": {str(k): round(v["rss_mib"], 1) for k, v in rss.items()},
        "rss_patches": small["patches"],
        "gflops_per_patch": {"full": round(flops_full / 1e9, 2),
                             "encoder": round(flops_enc / 1e9, 2)},
        "gflops_per_s": {k: v["gflops_per_s"] for k, v in per_backend.items()},
        "patches_per_s": {k: v["patches_per_s"] for k, v in per_backend.items()},
        "pipeline_patches_per_s": {k: round(v, 2) for k, v in rates.items()
                                   if k.startswith("pipeline")},
        "load_avg": round(os.getloadavg()[0], 2),
        "seconds": round(time.perf_counter() - t_start, 1),
    }
    print(f"{'measure':<24}{'device':<12}{'patches/s':>12}{'GFLOP/s':>10}")
    for key, v in per_backend.items():
        print(f"{'bare ' + key:<24}{str(v['device'])[:11]:<12}{v['patches_per_s']:>12.2f}"
              f"{v['gflops_per_s']:>10.1f}")
    for key, v in result["pipeline_patches_per_s"].items():
        print(f"{key:<24}{'':<12}{v:>12.2f}")
    for size, v in rss.items():
        print(f"peak RSS {size} px{'':<8}{v['rss_mib']:>10.1f} MiB  ({v['patches']} patches, "
              f"{v['seconds']:.1f} s)")
    for k in ("pipeline_vs_bare", "ort_vs_torch", "encoder_vs_full", "rss_20k_vs_5k"):
        print(f"{k:<24}{result[k]:>8.3f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
