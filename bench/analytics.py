"""Benchmark of the latent analytics at the scale of the paper's Inria training set.

70,000 patches x 512-D embeddings (Inria's 180 training tiles of 5000 px cut into 256 px
patches; ResNet-18/34 bottleneck width): PCA, both IoU estimators with their grouped
5-fold cross-validation, and the KMeans silhouette sweep k = 2..20. Prints one line per
step and, last, one JSON object with the wall-clock seconds per step and in total (the
goal: 60 s on a 2-core machine), the process CPU seconds (a figure that a busy, shared
machine inflates less) and the load average.

    .venv/bin/python bench/analytics.py [--n 70000] [--dim 512]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
from segexplain.core.analytics.clustering import LatentClustering
from segexplain.core.analytics.estimators import (
    ESTIMATOR_PARAMS,
    ESTIMATOR_SPECS,
    MLPIoUEstimator,
    build_features,
    cross_validate,
    feature_names,
)
from segexplain.core.analytics.latent import LatentPCA
from segexplain.core.sample.synthetic import synthetic_embeddings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k-max", type=int, default=20)
    args = ap.parse_args()

    x, iou, image = synthetic_embeddings(args.n, args.dim)
    rng = np.random.default_rng(1)
    columns = {
        "entropy": np.clip(0.6 - 0.5 * iou + rng.normal(0, 0.08, args.n), 0, 1),
        "confidence": np.clip(0.5 + 0.45 * iou + rng.normal(0, 0.08, args.n), 0, 1),
        "uncertain_frac": np.clip(0.3 - 0.25 * iou + rng.normal(0, 0.05, args.n), 0, 1),
        "pred_frac": np.clip(0.2 * iou + rng.normal(0, 0.03, args.n), 0, 1),
    }
    times: dict[str, float] = {}
    cpu: dict[str, float] = {}
    scores: dict[str, dict[str, float]] = {}

    t0, c0 = time.perf_counter(), time.process_time()
    pca = LatentPCA(n_components=50).fit(x)
    latent = pca.transform(x)
    times["pca"], cpu["pca"] = time.perf_counter() - t0, time.process_time() - c0
    print(f"pca           {times['pca']:7.2f} s  ({args.n} x {args.dim} -> 50)", flush=True)

    for name in ("mlp2d", "full"):
        t0, c0 = time.perf_counter(), time.process_time()
        k, extra = ESTIMATOR_SPECS[name]
        feats = build_features(latent, columns, feature_names(k, extra))
        params = {**ESTIMATOR_PARAMS[name], "random_state": 0}
        cv = cross_validate(params, feats, iou, image, n_splits=5)
        MLPIoUEstimator(**params).fit(feats, iou)
        times[f"estimator_{name}"] = time.perf_counter() - t0
        cpu[f"estimator_{name}"] = time.process_time() - c0
        scores[name] = {k2: round(float(v), 4) for k2, v in cv.scores.items()}
        print(f"estimator {name:<5}{times[f'estimator_{name}']:7.2f} s  (5-fold CV + final fit; "
              f"Spearman {cv.scores['spearman']:.3f})", flush=True)

    t0, c0 = time.perf_counter(), time.process_time()
    cl = LatentClustering(k_max=args.k_max)
    labels, _, sweep = cl._kmeans_sweep(np.ascontiguousarray(latent, np.float32))
    times["kmeans_sweep"] = time.perf_counter() - t0
    cpu["kmeans_sweep"] = time.process_time() - c0
    best = max(sweep, key=lambda k: sweep[k])
    print(f"kmeans sweep  {times['kmeans_sweep']:7.2f} s  (k = 2..{args.k_max}, best k={best})",
          flush=True)

    t0 = time.perf_counter()
    cl_full = LatentClustering(k_max=args.k_max).fit(latent)
    times["clustering_with_dbscan"] = time.perf_counter() - t0
    print(f"sweep+dbscan  {times['clustering_with_dbscan']:7.2f} s  (not in the goal's total;"
          f" chosen {cl_full.method_} k={cl_full.k_})", flush=True)

    goal_steps = ("pca", "estimator_mlp2d", "estimator_full", "kmeans_sweep")
    total = sum(times[s] for s in goal_steps)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps({"bench": "analytics", "n": args.n, "dim": args.dim,
                      "cpus": os.cpu_count(), "load_avg_1min_at_end": load,
                      "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
                      "cpu_total_s": round(sum(cpu[s] for s in goal_steps), 2),
                      **{f"{k}_s": round(v, 2) for k, v in times.items()},
                      "total_s": round(total, 2), "goal_total_s": 60,
                      "scores": scores}))


if __name__ == "__main__":
    main()
