"""How far the numbers for a new region can be trusted, on the sample data, over seeds.

For each seed: the demo model (trained with that seed unless --models gives it), then
through the command line exactly as a user runs it: `analyze` the training regions,
`estimate` the held-out region (`informal`), and `analyze` a copy of the training data
whose labels were corrupted in known patch windows (`core.sample.corrupt`). From the
bundles:

- region level, by leave-one-region-out over the training regions (the analysis
  bundle's `baselines`): each region's real overall IoU, every method's estimate and
  error, MAE per method (gated: against its covered patches, over the regions where it
  claims a figure), and the same for the held-out region (`region_estimate`);
- per patch, the stronger estimator's grouped cross-validated MAE, R2 and Spearman, and
  the AUROC of its estimate for finding failed patches (real IoU < 0.5);
- novelty AUROC of the held-out region's patches against the reference val patches;
- label-error AUROC: the label-disagreement score, corrupted windows vs the rest; and
  the share of corrupted windows the model can see at all (at least 50 of the changed
  pixels keep its prediction on the original label's side), with the AUROC of those,
  and the share whose score the corruption did not move (against the clean analysis).

The last line on stdout is one JSON object: per seed, then per figure the values over
the seeds with their mean, min and max, and each goal with the seeds meeting it.

    .venv/bin/python bench/validity.py [--seeds 0 1 2] [--models DIR] [--work DIR]
    .venv/bin/python bench/validity.py --quick    # tiny model, small data: minutes, CI
    .venv/bin/python bench/validity.py --scale 1000000   # cost of the region methods only

`--models DIR` takes DIR/seed<S> (made with `segexplain train --seed S`); without it
each seed's model is trained (demo preset, about 10 minutes on a quiet 2-core machine;
--quick: tiny preset, seconds). `--model PATH` uses one model for every seed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: goal name -> (figure, comparison, threshold)
GOALS = {
    "region_mae_le_3_points": ("region_mae.gated", "<=", 0.03),
    "region_mae_below_every_baseline": ("region_mae_margin", "<", 0.0),
    "patch_spearman_ge_0.8": ("patch.spearman", ">=", 0.8),
    "failure_auroc_ge_0.9": ("failure_auroc", ">=", 0.9),
    "novelty_auroc_ge_0.95": ("novelty_auroc", ">=", 0.95),
    "label_error_auroc_ge_0.9": ("label_error_auroc", ">=", 0.9),
}
BASELINES = ("mean_confidence", "atc", "mlp2d", "full")


def log(msg: str) -> None:
    """Progress for people, on stderr."""
    print(msg, file=sys.stderr, flush=True)


def cli(*args: Any) -> None:
    """Run the segexplain command line (as a user would); raise with its output on failure."""
    cmd = [sys.executable, "-m", "segexplain.core.cli", *map(str, args), "--progress", "none"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")


def auroc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(score of a positive > score of a negative), ties half; None without both."""
    from segexplain.core.analytics.novelty import auroc as _auroc

    v = _auroc(pos, neg)
    return None if not np.isfinite(v) else v


def seed_run(seed: int, args: argparse.Namespace, data: Path, work: Path) -> dict[str, Any]:
    """Every figure of one seed."""
    from segexplain.core.bundle.reader import Bundle
    from segexplain.core.sample.corrupt import corrupt_labels

    ps = 64 if args.quick else 256
    here = work / f"seed{seed}"
    here.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.model:
        model = Path(args.model)
    elif args.models:
        model = Path(args.models) / f"seed{seed}"
    else:
        model = here / "model"
        if not (model / "training_log.json").is_file():
            log(f"seed {seed}: training the {'tiny' if args.quick else 'demo'} model")
            cli("train", "--data", data / "train", "--out", model, "--seed", seed,
                "--preset", "tiny" if args.quick else "demo")
    train_log = json.loads((model / "training_log.json").read_text())
    log(f"seed {seed}: analyze, estimate, corrupted-label analyze")
    ref, new, bad = here / "ref.segx", here / "new.segx", here / "corrupt.segx"
    cli("analyze", "--data", data / "train", "--model", model, "--out", ref,
        "--patch-size", ps, "--seed", seed)
    cli("estimate", "--data", data / "new", "--reference", ref, "--model", model, "--out", new)
    windows = corrupt_labels(data / "train", here / "corrupt" / "train", patch_size=ps, seed=seed)
    cli("analyze", "--data", here / "corrupt" / "train", "--model", model, "--out", bad,
        "--patch-size", ps, "--seed", seed)

    rb, nb, bb = Bundle(ref), Bundle(new), Bundle(bad)
    loo = rb.manifest.get("baselines") or {}
    out: dict[str, Any] = {"seed": seed, "model_val_iou": train_log.get("val_iou"),
                           "model_steps": train_log.get("steps"),
                           "model_train_seconds": train_log.get("seconds"),
                           "iou_convention": rb.manifest.get("iou_convention")}
    out["region_mae"] = loo.get("mae")
    out["region_table"] = [
        {"region": r.get(loo.get("unit", "region")), "real": r["real_iou"],
         "error_vs_expected": r.get("error_vs_expected"),
         "real_covered": r["real_iou_covered"], "covered_share": r["covered_share"],
         "estimates": r["estimates"], "errors": r["errors"],
         "gated_interval": r.get("gated_interval"), "gated_in_interval": r.get("gated_in_interval")}
        for r in loo.get("rows", [])]
    out["region_gated_claims"] = sum(r["estimates"].get("gated") is not None
                                     for r in loo.get("rows", []))
    mae = out["region_mae"] or {}
    base = [mae[m] for m in BASELINES if mae.get(m) is not None]
    out["region_mae_margin"] = (mae["gated"] - min(base) if mae.get("gated") is not None
                                and base else None)
    reg = nb.manifest.get("region_estimate") or {}
    out["held_out"] = {k: reg.get(k) for k in ("iou", "interval90", "real_iou",
                                               "real_iou_covered", "covered_share",
                                               "methods", "errors", "in_interval")}
    full = (rb.manifest.get("estimators") or {}).get("full") or {}
    out["patch"] = {k: full.get(k) for k in ("mae", "r2", "spearman", "n")}
    cols = rb.patches
    iou = np.asarray(cols["iou"], np.float64)
    est = np.asarray(cols["est_iou"], np.float64)
    ok = np.isfinite(iou) & np.isfinite(est)
    fail = ok & (iou < 0.5)
    out["failure_share"] = float(fail.sum() / max(ok.sum(), 1))
    out["failure_auroc"] = auroc(-est[fail], -est[ok & ~fail])
    out["novelty_auroc"] = (nb.manifest.get("novelty") or {}).get("auroc_vs_reference_val")
    bc = bb.patches
    key = {(w["image"], int(w["row_off"]), int(w["col_off"])) for w in windows}
    hit = np.array([(str(i), int(r), int(c)) in key for i, r, c in
                    zip(bc["image"], bc["row_off"], bc["col_off"], strict=True)])
    score = np.asarray(bc["label_error"], np.float64)
    lab = np.isfinite(score)
    out["label_error_auroc"] = auroc(score[hit & lab], score[~hit & lab])
    split = np.asarray(bc["split"]).astype(str)
    out["label_error_auroc_by_split"] = {
        s: auroc(score[hit & lab & (split == s)], score[~hit & lab & (split == s)])
        for s in sorted(set(split.tolist()))}
    out["corrupted_patches"] = int(hit.sum())
    doc = json.loads((here / "corrupt" / "train" / "corruption.json").read_text())
    out["corruption"] = {k: doc[k] for k in ("buildings", "dropped", "added")}
    # corrupted windows the model can see: changed pixels its prediction keeps as before
    seen = visible_corruption(windows, data / "train" / "gt", here / "corrupt" / "train" / "gt",
                              bb, ps)
    vis = np.array([seen.get((str(i), int(r), int(c)), False) for i, r, c in
                    zip(bc["image"], bc["row_off"], bc["col_off"], strict=True)])
    out["label_error_visible_share"] = float(vis[hit].mean()) if hit.any() else None
    out["label_error_auroc_visible"] = auroc(score[vis & lab], score[~hit & lab])
    # corrupted windows whose score the corruption did not move (the score is blind there)
    clean = {(str(i), int(r), int(c)): float(e) for i, r, c, e in zip(
        cols["image"], cols["row_off"], cols["col_off"], cols["label_error"], strict=True)}
    before = np.array([clean.get((str(i), int(r), int(c)), np.nan) for i, r, c in
                       zip(bc["image"], bc["row_off"], bc["col_off"], strict=True)])
    moved = np.abs(score - before) > 1e-9
    out["label_error_unmoved_share"] = float((~moved[hit]).mean()) if hit.any() else None
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def visible_corruption(windows: list[dict[str, Any]], gt: Path, bad_gt: Path, bundle: Any,
                       ps: int) -> dict[tuple[str, int, int], bool]:
    """Per corrupted window: do at least OBJECT_MIN_PX of its changed pixels keep the
    model's prediction on the original label's side (a corruption the model can see)?"""
    import rasterio
    from segexplain.core.engine.metrics import OBJECT_MIN_PX

    out = {}
    for w in windows:
        win = ((w["row_off"], w["row_off"] + ps), (w["col_off"], w["col_off"] + ps))
        with rasterio.open(gt / f"{w['image']}.tif") as a, \
                rasterio.open(bad_gt / f"{w['image']}.tif") as b, \
                rasterio.open(bundle.raster(w["image"], "prediction")) as p:
            orig, bad = a.read(1, window=win) > 0, b.read(1, window=win) > 0
            pred = p.read(1, window=win) == 1
        seen = int(((orig != bad) & (pred == orig)).sum())
        out[(w["image"], int(w["row_off"]), int(w["col_off"]))] = seen >= OBJECT_MIN_PX
    return out


def rounded(obj: Any, digits: int = 4) -> Any:
    """`obj` with every float rounded (a shorter JSON line)."""
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return round(float(obj), digits)
    return obj


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure: values over the seeds, mean, min, max; per goal: the seeds meeting it."""
    figures = [f"region_mae.{m}" for m in (*BASELINES, "gated")] + [
        "region_mae_margin", "patch.mae", "patch.r2", "patch.spearman", "failure_auroc",
        "novelty_auroc", "label_error_auroc", "label_error_visible_share",
        "label_error_auroc_visible", "label_error_unmoved_share", "model_val_iou"]
    spread: dict[str, Any] = {}
    for f in figures:
        vals = [_get(r, f) for r in runs]
        got = [v for v in vals if isinstance(v, (int, float))]
        spread[f] = {"values": [None if v is None else round(float(v), 4) for v in vals],
                     "mean": round(float(np.mean(got)), 4) if got else None,
                     "min": round(float(np.min(got)), 4) if got else None,
                     "max": round(float(np.max(got)), 4) if got else None}
    goals = {}
    for name, (f, op, thr) in GOALS.items():
        met = []
        for r in runs:
            v = _get(r, f)
            if isinstance(v, (int, float)) and (v <= thr if op == "<=" else
                                                v < thr if op == "<" else v >= thr):
                met.append(r["seed"])
        goals[name] = {"figure": f, "goal": f"{op} {thr}", "met_seeds": met,
                       "met": len(met) == len(runs)}
    return {"spread": spread, "goals": goals}


def scale_run(n: int, dim: int = 512) -> dict[str, Any]:
    """Seconds of the region methods (ATC fit + leave-one-region-out) on `n` synthetic patches."""
    from segexplain.core.analytics.baselines import fit_region_level
    from segexplain.core.engine.records import PatchTable
    from segexplain.core.sample.synthetic import synthetic_confusion, synthetic_embeddings

    x, iou, image = synthetic_embeddings(n, dim)
    rng = np.random.default_rng(0)
    lab = np.clip(0.1 + 0.3 * rng.random(n), 0, 1)
    pred = np.clip(lab * (0.5 + 0.5 * iou), 0, 1)
    cols: dict[str, np.ndarray] = {
        "image": image.astype(str), "region": np.array(list("abcde"))[image % 5],
        "split": np.where(image % 7 == 0, "val", "train"), "iou": iou, "label_frac": lab,
        "pred_frac": pred, "entropy": 0.6 - 0.5 * iou, "confidence": 0.5 + 0.45 * iou,
        "uncertain_frac": 0.3 - 0.25 * iou}
    cols.update(synthetic_confusion(iou, lab, pred, 256 * 256, rng))
    table = PatchTable(columns=cols, embeddings=x, footprints=[], crs_wkt="", images=[])
    t0, c0 = time.perf_counter(), time.process_time()
    _, loo = fit_region_level(table, n_latent=20, seed=0)
    assert loo is not None
    return {"bench": "validity-scale", "patches": n, "dim": dim,
            "region_seconds": round(time.perf_counter() - t0, 1),
            "region_cpu_seconds": round(time.process_time() - c0, 1),
            "capped": loo.capped, "load_avg": round(os.getloadavg()[0], 2)}


def main() -> None:
    """Run the seeds and print the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="tiny model, small sample data, 64 px patches (minutes)")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="training / analysis seeds (default 0 1 2; --quick: 0)")
    ap.add_argument("--models", type=Path, default=None, help="folder with seed<S> models")
    ap.add_argument("--model", type=Path, default=None, help="one model for every seed")
    ap.add_argument("--data", type=Path, default=None,
                    help="sample data root (train/, new/); default: written into --work")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: temp)")
    ap.add_argument("--scale", type=int, default=None,
                    help="only time the region methods on this many synthetic patches")
    args = ap.parse_args()
    if args.scale:
        print(json.dumps(scale_run(args.scale)), flush=True)
        return
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="segexplain-validity-") as tmp:
        work = args.work or Path(tmp)
        data = args.data or work / "data"
        if not (data / "train").is_dir():
            log(f"sample data -> {data}")
            cli("sample-data", data, *(["--small"] if args.quick else []))
        runs = [seed_run(s, args, data, work) for s in seeds]
    doc = {"bench": "validity", "quick": args.quick, "seeds": seeds,
           "load_avg": round(os.getloadavg()[0], 2), "runs": runs, **summarise(runs),
           "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(rounded(doc), allow_nan=False, default=float), flush=True)


if __name__ == "__main__":
    main()
