"""Benchmark of the latent analytics from Inria scale (70,000 patches) to a country (1,000,000).

N patches x 512-D synthetic embeddings (`synthetic_embeddings`: 14 scene types, 100
patches per image, 70 % of the images "train"), through the stages of `analyze_table`:

- pca: `LatentPCA` fit (at most 200,000 rows) and transform of all rows;
- estimators: the 2-D and the full MLP, grouped 5-fold cross-validation + final fit
  (each fit on at most 10,000 rows), predictions for all rows;
- clusters: KMeans silhouette sweep k = 2..20 (fit on 10,000 rows, silhouette on 3,000,
  every row assigned) plus DBSCAN on 10,000 rows (`LatentClustering.fit`) and the table;
- novelty: `KNNNovelty` on the train rows (leave-one-image-out), distance of every row;
  exact tiled search below 150,000 reference rows, the IVF index above;
- region: the region-level methods with their leave-one-region-out comparison
  (`fit_region_level`: fits on at most 3,000 rows, evaluation on 10,000);
- bundle_write: the patches layer (bulk GeoPackage + R-tree) and `columns/*.npy`.

Per stage: wall and process CPU seconds (CPU is less inflated by a busy, shared
machine). kNN figures: the bare GEMM of the exact search's shapes (at 1,000,000 on a
subset of queries, scaled), the exact kNN's time over that GEMM's, and for the IVF index
recall@k, the relative error of the mean neighbour distance and the mean absolute
difference of the novelty percentile, against the exact search on sampled queries.

    .venv/bin/python bench/analytics.py [--n 100000] [--dim 512]
    .venv/bin/python bench/analytics.py --sizes 100000,1000000   # one process per size

With --sizes, one JSON line per size (each run in its own process) and a last line with
the ratios of the largest to the smallest size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

STAGES = ("pca", "estimators", "clusters", "novelty", "region", "bundle_write")


class Clock:
    """Wall and process-CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        self.wall[name] = time.perf_counter() - t0
        self.cpu[name] = time.process_time() - c0
        print(f"{name:<14}{self.wall[name]:8.2f} s wall {self.cpu[name]:8.2f} s CPU",
              file=sys.stderr, flush=True)
        return out


def _gemm_seconds(q: np.ndarray, ref: np.ndarray, tile_rows: int, tile_cols: int) -> float:
    """Seconds of the bare float32 GEMMs of the exact search's tiles (K + 1 columns)."""
    qa = np.ones((q.shape[0], q.shape[1] + 1), np.float32)
    qa[:, :-1] = q
    ra = np.ones((ref.shape[0], ref.shape[1] + 1), np.float32)
    ra[:, :-1] = ref
    t0 = time.perf_counter()
    for s in range(0, qa.shape[0], tile_rows):
        for a in range(0, ra.shape[0], tile_cols):
            _ = qa[s:s + tile_rows] @ ra[a:a + tile_cols].T
    return time.perf_counter() - t0


def run(n: int, dim: int, k_max: int, workdir: Path) -> dict[str, Any]:
    """All stages at N patches; returns the JSON record."""
    from segexplain.core.analytics.clustering import LatentClustering, cluster_table
    from segexplain.core.analytics.estimators import (
        ESTIMATOR_PARAMS,
        ESTIMATOR_SPECS,
        MLPIoUEstimator,
        build_features,
        cross_validate,
        feature_names,
    )
    from segexplain.core.analytics.knn import IVF_MIN_REFERENCE, TILE_COLS, TILE_ROWS, exact_knn
    from segexplain.core.analytics.latent import LatentPCA, whiten
    from segexplain.core.analytics.novelty import KNNNovelty, mean_distance, percentile_of
    from segexplain.core.bundle.writer import PATCH_FIELDS, write_columns, write_patches_layer
    from segexplain.core.sample.synthetic import synthetic_embeddings

    t0 = time.perf_counter()
    x, iou, image = synthetic_embeddings(n, dim)
    rng = np.random.default_rng(1)
    columns: dict[str, np.ndarray] = {
        "entropy": np.clip(0.6 - 0.5 * iou + rng.normal(0, 0.08, n), 0, 1),
        "confidence": np.clip(0.5 + 0.45 * iou + rng.normal(0, 0.08, n), 0, 1),
        "uncertain_frac": np.clip(0.3 - 0.25 * iou + rng.normal(0, 0.05, n), 0, 1),
        "pred_frac": np.clip(0.2 * iou + rng.normal(0, 0.03, n), 0, 1),
    }
    train = (image % 10) < 7
    print(f"data          {time.perf_counter() - t0:8.2f} s ({n} x {dim})", file=sys.stderr)
    clock = Clock()
    rec: dict[str, Any] = {"bench": "analytics", "n": n, "dim": dim, "cpus": os.cpu_count()}

    def pca_stage() -> tuple[Any, np.ndarray]:
        pca = LatentPCA(n_components=50).fit(x)
        return pca, pca.transform(x)

    pca, latent = clock.run("pca", pca_stage)

    scores: dict[str, dict[str, float]] = {}

    def estimator_stage() -> None:
        for name in ("mlp2d", "full"):
            k, extra = ESTIMATOR_SPECS[name]
            feats = build_features(latent, columns, feature_names(k, extra))
            params = {**ESTIMATOR_PARAMS[name], "random_state": 0}
            cv = cross_validate(params, feats, iou, image, n_splits=5)
            MLPIoUEstimator(**params).fit(feats, iou).predict(feats)
            scores[name] = {k2: round(float(v), 4) for k2, v in cv.scores.items()}

    clock.run("estimators", estimator_stage)

    def cluster_stage() -> Any:
        space = latent[:, :50]
        cl = LatentClustering(k_max=k_max).fit(space)
        cols = {"patch_id": np.arange(n), "iou": iou, "region": (image % 5).astype(str),
                "label_frac": columns["pred_frac"], "pred_frac": columns["pred_frac"]}
        cluster_table(cl.labels_, space, cols)
        return cl

    cl = clock.run("clusters", cluster_stage)
    rec["clusters"] = {"method": cl.method_, "k": cl.k_}

    space = whiten(latent[:, :50], pca.explained_variance_ratio_)
    ref_rows = np.flatnonzero(train)

    search_s: dict[str, float] = {}

    def novelty_stage() -> tuple[Any, np.ndarray]:
        nov = KNNNovelty(k=10).fit(space[ref_rows], image[ref_rows])
        t0 = time.perf_counter()
        dist = nov.distance(space, image, image[ref_rows])
        search_s["all_rows"] = time.perf_counter() - t0
        return nov, dist

    nov, dist = clock.run("novelty", novelty_stage)
    knn: dict[str, Any] = {"k": 10, "queries": n, "reference": int(ref_rows.size),
                           "dims": int(space.shape[1]),
                           "method": "ivf" if nov.index_ is not None else "exact",
                           "ivf_min_reference": IVF_MIN_REFERENCE}
    # bare GEMM of the exact search's shapes; on a subset of queries when it is long
    sub = n if n * ref_rows.size <= 1.5e10 else max(2048, int(1.5e10 // ref_rows.size))
    qs = np.sort(np.random.default_rng(2).choice(n, sub, replace=False)) if sub < n \
        else np.arange(n)
    gemm = _gemm_seconds(space[qs], space[ref_rows], TILE_ROWS, TILE_COLS)
    scale = n / qs.size
    if nov.index_ is None:
        exact_s = search_s["all_rows"]
        knn["exact_queries_timed"] = n
    else:
        t0 = time.perf_counter()
        exact_knn(space[qs], space[ref_rows], 10, image[qs], image[ref_rows])
        exact_s = (time.perf_counter() - t0) * scale
        knn["exact_queries_timed"] = int(qs.size)
        knn["ivf"] = {"nlist": int(nov.index_.centroids_.shape[0]),
                      "nprobe": int(nov.index_.nprobe)}
    flops = 2.0 * n * ref_rows.size * (space.shape[1] + 1)
    knn.update({"gemm_s": round(gemm * scale, 2), "gemm_gflops": round(flops / (gemm * scale)
                                                                         / 1e9, 1),
                "exact_s": round(exact_s, 2), "exact_over_gemm": round(exact_s / (gemm * scale),
                                                                       3),
                "search_s": round(search_s["all_rows"], 2),
                "search_over_exact": round(search_s["all_rows"] / exact_s, 3),
                "gemm_scaled_from_queries": int(qs.size)})
    if nov.index_ is not None:  # recall of the index on sampled queries
        check = np.sort(np.random.default_rng(3).choice(n, 2000, replace=False))
        d2e, ie = exact_knn(space[check], space[ref_rows], 10, image[check], image[ref_rows])
        d2a, ia = nov.index_.search(space[check], 10, image[check], image[ref_rows])
        recall = np.mean([np.intersect1d(a[a >= 0], b[b >= 0]).size / 10
                          for a, b in zip(ia, ie, strict=True)])
        de, da = mean_distance(d2e), mean_distance(d2a)
        # end to end: novelty percentile of the exact pipeline (exact calibration on the
        # same calibration rows, exact distances) vs the index's pipeline
        m = ref_rows.size
        cal_rows = np.sort(np.random.default_rng(0).choice(m, nov.max_reference_queries,
                                                           replace=False))
        t0 = time.perf_counter()
        d2c, _ = exact_knn(space[ref_rows][cal_rows], space[ref_rows], 10,
                           image[ref_rows][cal_rows], image[ref_rows])
        cal_exact = np.sort(mean_distance(d2c))
        knn["exact_calibration_s"] = round(time.perf_counter() - t0, 2)
        pct_exact = percentile_of(de, cal_exact)
        pct_index = percentile_of(da, nov.reference_distances_)
        knn["recall_at_k"] = round(float(recall), 4)
        knn["mean_distance_rel_error"] = round(float(np.mean(da / de - 1)), 4)
        knn["percentile_abs_diff_mean"] = round(float(np.mean(np.abs(pct_index - pct_exact))),
                                                3)
        knn["percentile_abs_diff_p95"] = round(float(np.percentile(
            np.abs(pct_index - pct_exact), 95)), 3)
        knn["above_95_agreement"] = round(float(np.mean((pct_index > 95) ==
                                                        (pct_exact > 95))), 4)
        knn["recall_queries"] = int(check.size)
    rec["knn"] = knn

    def region_stage() -> None:
        from segexplain.core.analytics.baselines import fit_region_level
        from segexplain.core.engine.records import PatchTable
        from segexplain.core.sample.synthetic import synthetic_confusion

        r = np.random.default_rng(0)
        lab = np.clip(0.1 + 0.3 * r.random(n), 0, 1)
        pred = np.clip(lab * (0.5 + 0.5 * iou), 0, 1)
        cols: dict[str, np.ndarray] = {
            "image": image.astype(str), "region": np.array(list("abcde"))[image % 5],
            "split": np.where(train, "train", "val"), "iou": iou, "label_frac": lab,
            "pred_frac": pred, "entropy": columns["entropy"],
            "confidence": columns["confidence"], "uncertain_frac": columns["uncertain_frac"]}
        cols.update(synthetic_confusion(iou, lab, pred, 256 * 256, r))
        table = PatchTable(columns=cols, embeddings=x, footprints=[], crs_wkt="", images=[])
        fit_region_level(table, n_latent=20, seed=0)

    clock.run("region", region_stage)

    def bundle_stage() -> int:
        import shapely

        row, col = (np.arange(n) % 100) // 10, np.arange(n) % 10
        x0 = 500000.0 + (image % 100) * 2560.0 + col * 256.0
        y0 = 5000000.0 + (image // 100) * 2560.0 + row * 256.0
        boxes = shapely.box(x0, y0, x0 + 256.0, y0 + 256.0)
        cols = {"patch_id": np.arange(n), "image": np.char.add("img", image.astype(str)),
                "region": np.char.add("r", (image % 5).astype(str)),
                "split": np.where(train, "train", "val"), "row_off": row * 256,
                "col_off": col * 256, "height": np.full(n, 256), "width": np.full(n, 256),
                "iou": iou, "pc1": latent[:, 0], "pc2": latent[:, 1], "cluster": cl.labels_,
                "novelty": percentile_of(dist, nov.reference_distances_), **columns}
        out = workdir / f"bench{n}.segx"
        out.mkdir(parents=True, exist_ok=True)
        wkt = ('PROJCS["WGS 84 / UTM zone 33N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID['
               '"WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",'
               '0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER['
               '"latitude_of_origin",0],PARAMETER["central_meridian",15],PARAMETER['
               '"scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER['
               '"false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32633"]]')
        write_patches_layer(out / "patches.gpkg", "patches", PATCH_FIELDS, cols,
                            list(boxes), wkt)
        write_columns(out / "columns", PATCH_FIELDS, cols)
        return int(sum(p.stat().st_size for p in out.rglob("*") if p.is_file()))

    size = clock.run("bundle_write", bundle_stage)
    rec["bundle_bytes"] = size
    total_wall = sum(clock.wall[s] for s in STAGES)
    total_cpu = sum(clock.cpu[s] for s in STAGES)
    rec.update({
        "wall_s": {k: round(v, 2) for k, v in clock.wall.items()},
        "cpu_s": {k: round(v, 2) for k, v in clock.cpu.items()},
        "total_wall_s": round(total_wall, 2), "total_cpu_s": round(total_cpu, 2),
        "analytics_wall_s": round(total_wall - clock.wall["bundle_write"], 2),
        "goal_analytics_wall_s": 120,
        "load_avg_1min_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "scores": scores,
    })
    return rec


def _ratios(small: dict[str, Any], large: dict[str, Any]) -> dict[str, Any]:
    def r(a: float, b: float) -> float | None:
        return round(b / a, 2) if a else None

    return {"bench": "analytics_ratios", "n": [small["n"], large["n"]],
            "n_ratio": r(small["n"], large["n"]),
            "wall_ratio": {s: r(small["wall_s"][s], large["wall_s"][s]) for s in STAGES},
            "cpu_ratio": {s: r(small["cpu_s"][s], large["cpu_s"][s]) for s in STAGES},
            "total_wall_ratio": r(small["total_wall_s"], large["total_wall_s"]),
            "total_cpu_ratio": r(small["total_cpu_s"], large["total_cpu_s"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--k-max", type=int, default=20)
    ap.add_argument("--sizes", default=None,
                    help="comma-separated sizes, each run in its own process")
    args = ap.parse_args()
    if args.sizes:
        recs = []
        for n in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run([sys.executable, __file__, "--n", str(n), "--dim",  # noqa: S603
                                  str(args.dim), "--k-max", str(args.k_max)],
                                 check=True, stdout=subprocess.PIPE, text=True)
            rec = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(rec), flush=True)
            recs.append(rec)
        if len(recs) >= 2:
            print(json.dumps(_ratios(recs[0], recs[-1])), flush=True)
        return
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(run(args.n, args.dim, args.k_max, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
