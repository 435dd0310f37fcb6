"""Scale benchmark: tiles on 1 and 2 local Dask workers, per-patch costs, the plan.

Measured here (on sample-data tiles with a randomly initialised U-Net of the real size):

- throughput (patches/s) of `run_tiles` on a local Dask cluster of 1 worker (all cores
  as model threads) and of 2 workers (cores / 2 threads each), warm workers (model
  loaded), and their ratio;
- per-patch costs of the engine in one process: inference (backend) seconds, the rest
  (reading, metrics, thumbnails, stitching) seconds, model FLOPs per patch;
- bytes per patch in the analysis bundle (with its parts) and in the driver's PatchTable;
- peak memory (RSS) per Dask worker.

From those, the plan for an Inria-sized run (70,000 patches) and a country-sized one
(20 million): hours, memory and disk on this machine, one GPU server and N GPU
servers. Every figure the plan uses is listed under "measured" or "assumed" in the
JSON; assumptions carry their basis. Last line: one JSON object.

    .venv/bin/python bench/scale.py [--tile-size 1024] [--tiles 1] [--encoder resnet34]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from segexplain.core.engine.settings import EngineSettings

#: Assumptions for the GPU plan (nothing here was measured on a GPU).
GPU_ASSUMPTIONS = {
    "gpu": "one NVIDIA A100 80 GB per server",
    "gpu_peak_tflops_bf16": 312.0,  # vendor data sheet, dense bf16 tensor cores
    "gpu_utilisation": 0.25,  # assumed for U-Net convolutions under autocast
    "server_cpu_cores": 32,  # assumed; they read, score and stitch for the GPU
    "cpu_core_speed_vs_here": 1.0,  # assumed: a server core does this machine's work/core
    "worker_processes_per_gpu": 8,  # assumed: Dask workers sharing one GPU (host RAM)
    "cluster_efficiency": 0.9,  # assumed: independent tiles, one task per 5000 px tile
    "cluster_servers": 8,
}


def _peak_rss_mib() -> float:
    """Peak RSS of this process's address space (VmHWM; ru_maxrss survives exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _NoModel:
    """Backend stand-in with no model: measures the engine's CPU side alone.

    Its "probabilities" are the first band, so metrics, thumbnails and stitching do
    their full work on varied masks.
    """

    name = "none"

    def __init__(self, dim: int) -> None:
        import torch

        self.dim = dim
        self.device = torch.device("cpu")  # the engine reads device.type, as of a real one

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        emb = np.zeros((x.shape[0], self.dim), np.float32)
        emb[:, :x.shape[1]] = x.mean(axis=(2, 3))
        return np.ascontiguousarray(x[:, 0], np.float32), emb

    def suggest_batch_size(self, in_channels: int, patch_size: int) -> int:
        from segexplain.core.model.backends import CPU_BATCH

        return CPU_BATCH


def _make_model(encoder: str, where: Path) -> Any:
    import torch
    from segexplain.core.model.models import as_loaded, build_model, save_model

    torch.manual_seed(0)  # the same random weights (and rasters) on every run
    lm = as_loaded(build_model("unet", encoder, 3, 1))
    save_model(lm, where)
    return lm


def _flops_per_patch(model: Any, patch: int) -> float:
    import torch
    from segexplain.core.model.models import ExplainNet
    from torch.utils.flop_counter import FlopCounterMode

    net = ExplainNet(model.module).eval()
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        net(torch.zeros(1, model.in_channels, patch, patch))
    return float(fc.get_total_flops())


def _in_process(pairs: list[Any], model: Any, settings: EngineSettings,
                raster_dir: Path) -> tuple[Any, dict[str, float]]:
    """Engine in this process; the backend's share of the time measured apart."""
    import segexplain.core.engine.inference as engine

    spent = {"backend": 0.0, "setup": 0.0}
    real = engine.make_backend

    def timed(*a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        be = real(*a, **k)
        spent["setup"] += time.perf_counter() - t
        run = be.run

        def run_timed(x: np.ndarray) -> Any:
            t = time.perf_counter()
            out = run(x)
            spent["backend"] += time.perf_counter() - t
            return out

        be.run = run_timed
        return be

    engine.make_backend = timed
    try:
        t = time.perf_counter()
        table = engine.analyze_images(pairs, model, settings, raster_dir=raster_dir)
        wall = time.perf_counter() - t
    finally:
        engine.make_backend = real
    n = len(table)
    return table, {"wall_s": wall, "backend_setup_s": spent["setup"],
                   "infer_s_per_patch": spent["backend"] / n,
                   "other_s_per_patch": (wall - spent["setup"] - spent["backend"]) / n}


def _cpu_side(pairs: list[Any], model: Any, settings: EngineSettings,
              raster_dir: Path) -> dict[str, float]:
    """Engine without a model: wall and CPU seconds per patch of read/score/engine/stitch."""
    import segexplain.core.engine.inference as engine

    real = engine.make_backend
    engine.make_backend = lambda *a, **k: _NoModel(model.embedding_channels)
    try:
        t, c = time.perf_counter(), time.process_time()
        table = engine.analyze_images(pairs, model, settings, raster_dir=raster_dir)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
    finally:
        engine.make_backend = real
    n = len(table)
    return {"cpu_side_wall_s_per_patch": round(wall / n, 5),
            "cpu_side_cpu_s_per_patch": round(cpu / n, 5)}


def _bundle_bytes(table: Any, out: Path) -> dict[str, float]:
    from segexplain.core.analytics.fit import analyze_table
    from segexplain.core.bundle.manifest import write_analysis
    from segexplain.core.bundle.writer import BundleWriter
    from segexplain.core.scale.tiles import publish_rasters

    with BundleWriter(out) as writer:
        publish_rasters(table, writer.raster_dir)
        res = analyze_table(table, n_components=min(50, len(table) - 1), clusters_max=8,
                            folds=3)
        manifest = write_analysis(writer, res, {"patch_size": 0, "stride": 0})
        writer.finish(manifest)
    n = len(table)

    def size(glob: str) -> float:
        return sum(p.stat().st_size for p in out.glob(glob) if p.is_file()) / n

    parts = {"rasters": size("rasters/*"), "gpkg": size("*.gpkg"),
             "embeddings": size("arrays/embeddings.npy"),
             "thumbnails": size("arrays/thumbs_*.npy")}
    parts["total"] = size("**/*")
    return {k: round(v, 1) for k, v in parts.items()}


def _table_bytes(table: Any) -> float:
    arrays = [table.embeddings, *table.columns.values(), *table.thumbnails.values()]
    wkb = sum(len(g.wkb) for g in table.footprints)
    return (sum(a.nbytes for a in arrays) + wkb) / len(table)


def _tiles_rate(workers: int, pairs: list[Any], model_path: Path, settings: EngineSettings,
                work: Path) -> dict[str, Any]:
    """`run_tiles` throughput on `workers` local Dask workers (0: in this process)."""
    from segexplain.core.scale.executors import DaskExecutor, InProcessExecutor, cpu_count
    from segexplain.core.scale.tiles import cached_model, run_tiles

    t0 = time.perf_counter()
    ex: Any = DaskExecutor(workers=workers) if workers else InProcessExecutor()
    with ex:
        started = time.perf_counter() - t0
        if workers:
            ex.client.run(cached_model, str(model_path))  # warm: imports, model
        else:
            ex.threads = cpu_count()
        run_tiles(pairs[:max(1, workers)], model_path, settings, executor=ex,
                  work_dir=work / f"warm{workers}")  # warm: ONNX sessions, first reads
        t = time.perf_counter()
        table = run_tiles(pairs, model_path, settings, executor=ex,
                          work_dir=work / f"w{workers}")
        wall = time.perf_counter() - t
        rss = ex.client.run(_peak_rss_mib) if workers else {"self": _peak_rss_mib()}
    return {"workers": workers, "threads_per_worker": ex.threads, "patches": len(table),
            "wall_s": round(wall, 2), "patches_per_s": round(len(table) / wall, 3),
            "cluster_start_s": round(started, 1),
            "worker_peak_rss_mib": round(max(rss.values()), 1)}


def _plan(n: int, rate_here: float, m: dict[str, Any], a: dict[str, Any]) -> dict[str, Any]:
    gib = 1024.0 ** 3
    driver_gib = n * m["driver_table_bytes_per_patch"] / gib
    disk_gib = n * m["bundle_bytes_per_patch"]["total"] / gib
    worker_gib = m["worker_peak_rss_mib"] / 1024.0
    gpu_rate = a["gpu_peak_tflops_bf16"] * 1e12 * a["gpu_utilisation"] / m["flops_per_patch"]
    cpu_side = a["server_cpu_cores"] * a["cpu_core_speed_vs_here"] / m[
        "cpu_side_cpu_s_per_patch"]
    # one worker process handles a patch in its CPU-side wall time at best (main thread)
    feed = a["worker_processes_per_gpu"] / m["cpu_side_wall_s_per_patch"]
    bounds = {"gpu": gpu_rate, "server cores": cpu_side, "worker processes": feed}
    bound = min(bounds, key=lambda k: bounds[k])
    server_rate = bounds[bound]
    saturate = math.ceil(min(gpu_rate, cpu_side) * m["cpu_side_wall_s_per_patch"])
    servers = a["cluster_servers"]
    cluster_rate = server_rate * servers * a["cluster_efficiency"]

    def hours(rate: float) -> float:
        return round(n / rate / 3600.0, 2)

    return {
        "patches": n,
        "this_machine": {"hours": hours(rate_here), "patches_per_s": round(rate_here, 2),
                         "basis": "measured here"},
        "gpu_server": {"hours": hours(server_rate), "patches_per_s": round(server_rate, 1),
                       "bound": bound,
                       "gpu_rate_assumed": round(gpu_rate, 1),
                       "cpu_side_rate": round(cpu_side, 1),
                       "worker_feed_rate": round(feed, 1),
                       "worker_processes_to_saturate": saturate,
                       "basis": "assumed GPU rate; CPU side from measured per-patch cost"},
        f"cluster_{servers}_gpu_servers": {"hours": hours(cluster_rate),
                                           "patches_per_s": round(cluster_rate, 1),
                                           "basis": "assumed"},
        "driver_memory_gib": round(driver_gib, 2),
        "worker_memory_gib": round(worker_gib, 2),
        "gpu_server_worker_memory_gib": round(worker_gib * a["worker_processes_per_gpu"], 1),
        "bundle_disk_gib": round(disk_gib, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tile-size", type=int, default=1024, help="sample tile size, px")
    ap.add_argument("--tiles", type=int, default=1, help="tiles per sample region")
    ap.add_argument("--encoder", default="resnet34")
    ap.add_argument("--patch-size", type=int, default=256)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()

    from segexplain.core.data.datasets import discover
    from segexplain.core.model.backends import cached_onnx, resolve_backend
    from segexplain.core.sample.generate import write_sample_data
    from segexplain.core.scale.executors import cpu_count

    tmp = Path(tempfile.mkdtemp(prefix="segexplain-scale-"))
    try:
        write_sample_data(tmp / "data", tile_size=args.tile_size, tiles=args.tiles)
        pairs = discover(tmp / "data" / "train", None, require_labels=True)
        model = _make_model(args.encoder, tmp / "model")
        settings = EngineSettings(patch_size=args.patch_size, iou_convention="zero",
                                  backend="auto")
        backend = resolve_backend("auto")
        if backend == "onnx":
            cached_onnx(model, args.patch_size, "avg", False)  # export once, not timed
        cores = cpu_count()
        m: dict[str, Any] = {"cores_here": cores, "backend": backend,
                             "encoder": args.encoder, "patch_size": args.patch_size,
                             "flops_per_patch": _flops_per_patch(model, args.patch_size)}
        print(f"model        unet/{args.encoder}, {m['flops_per_patch'] / 1e9:.1f} GFLOP "
              f"per {args.patch_size} px patch, backend {backend}, {cores} cores", flush=True)

        table, costs = _in_process(pairs, model, replace(settings, threads=cores), tmp / "r0")
        m.update({k: round(v, 5) for k, v in costs.items()})
        m["patches"] = len(table)
        m["in_process_patches_per_s"] = round(len(table) / costs["wall_s"], 3)
        m["cpu_gflops_effective"] = round(
            m["flops_per_patch"] / costs["infer_s_per_patch"] / 1e9, 1)
        print(f"in-process   {len(table)} patches: inference {costs['infer_s_per_patch']:.3f}"
              f" s/patch ({m['cpu_gflops_effective']} GFLOP/s), other "
              f"{costs['other_s_per_patch']:.4f} s/patch", flush=True)
        m.update(_cpu_side(pairs, model, settings, tmp / "r1"))
        print(f"cpu side     {m['cpu_side_wall_s_per_patch']:.4f} s/patch wall, "
              f"{m['cpu_side_cpu_s_per_patch']:.4f} s/patch CPU (read, score, thumbnails, "
              "stitch; no model)", flush=True)
        m["driver_table_bytes_per_patch"] = round(_table_bytes(table), 1)
        m["bundle_bytes_per_patch"] = _bundle_bytes(table, tmp / "bench.segx")
        print(f"bytes/patch  bundle {m['bundle_bytes_per_patch']}, driver table "
              f"{m['driver_table_bytes_per_patch']:.0f}", flush=True)

        runs = []
        for workers in (0, 1, 2):
            r = _tiles_rate(workers, pairs, tmp / "model", settings, tmp / "work")
            runs.append(r)
            label = f"dask {workers} wkr" if workers else "tiles here  "
            print(f"{label} {r['patches_per_s']:.3f} patches/s ({r['wall_s']} s, "
                  f"{r['threads_per_worker']} thread(s) each, peak RSS "
                  f"{r['worker_peak_rss_mib']} MiB/process)", flush=True)
        m["tiles_in_process"], m["dask"] = runs[0], runs[1:]
        m["ratio_2_vs_1_workers"] = round(runs[2]["patches_per_s"] / runs[1]["patches_per_s"],
                                          3)
        m["worker_peak_rss_mib"] = max(r["worker_peak_rss_mib"] for r in runs[1:])
        rate_here = max(r["patches_per_s"] for r in runs)
        plans = {name: _plan(n, rate_here, m, GPU_ASSUMPTIONS)
                 for name, n in (("inria_70k", 70_000), ("country_20m", 20_000_000))}
        key = f"cluster_{GPU_ASSUMPTIONS['cluster_servers']}_gpu_servers"
        for name, p in plans.items():
            print(f"plan {name:<12} here {p['this_machine']['hours']} h, GPU server "
                  f"{p['gpu_server']['hours']} h, {key} {p[key]['hours']} h; driver "
                  f"{p['driver_memory_gib']} GiB, bundle {p['bundle_disk_gib']} GiB",
                  flush=True)
        print(json.dumps({"bench": "scale", "measured": m, "assumed": GPU_ASSUMPTIONS,
                          "plan": plans,
                          "ratio_2_vs_1_workers": m["ratio_2_vs_1_workers"]}))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


if __name__ == "__main__":
    main()
