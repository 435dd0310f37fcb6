"""`segexplain info`: what a bundle holds, for people or (--json) programs.

Reads the manifest and the GeoPackage with numpy and the standard library only (no
torch, no scikit-learn), so it answers in a fraction of a second anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..engine.records import describe_convention
from ..figures import format_number, nanmean_or_none
from ..progress import Progress
from ._validity import baseline_lines, region_lines

HELP = "summarise a bundle: counts, IoU figures, estimator scores, clusters, novelty"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `segexplain info`."""
    parser.add_argument("bundle", type=Path, help="analysis or estimate bundle (.segx)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout instead of text")


def summarize(path: Path) -> dict[str, Any]:
    """Summarise a bundle as one JSON-able dict."""
    import numpy as np

    from ..bundle.reader import Bundle

    b = Bundle(path)
    m = b.manifest
    cols = b.patches
    split = np.asarray(cols["split"]).astype(str)
    region = np.asarray(cols["region"]).astype(str)
    out: dict[str, Any] = {
        "bundle": str(b.path), "kind": b.kind, "created": m.get("created"),
        "segexplain_version": m.get("segexplain_version"),
        "n_patches": len(b), "n_images": len(m.get("images", [])),
        "patches_by_split": {s: int((split == s).sum()) for s in sorted(set(split.tolist()))},
        "patches_by_region": {r: int((region == r).sum())
                              for r in sorted(set(region.tolist()))},
        "iou_convention": m.get("iou_convention"),
        "patch_size": m.get("patch_size"), "stride": m.get("stride"),
        "model": m.get("model"),
        "pca": m.get("pca"),
        "stats": m.get("stats"),
        "estimators": {k: {f: v.get(f) for f in ("mae", "r2", "spearman", "n", "folds",
                                                  "grouping", "features")}
                       for k, v in (m.get("estimators") or {}).items()},
        "clustering": {k: v for k, v in (m.get("clustering") or {}).items() if k != "sweep"},
        "novelty": m.get("novelty"),
        "notes": m.get("notes", []),
        "coverage": m.get("coverage"),
        "region_estimate": m.get("region_estimate"),
        "baselines": m.get("baselines"),
    }
    out["est_iou_mean"] = nanmean_or_none(cols.get("est_iou", []))
    if b.kind == "estimate":
        out["reference"] = m.get("reference")
        out["estimator"] = m.get("estimator")
        out["estimate_scores"] = m.get("estimate_scores")
    return out


def render(s: dict[str, Any]) -> str:
    """Text form of `summarize` for people."""
    lines = [f"{s['bundle']}  ({s['kind']} bundle, segexplain {s['segexplain_version']}, "
             f"{s['created']})",
             f"patches: {s['n_patches']} in {s['n_images']} image(s), patch {s['patch_size']}"
             f" px, stride {s['stride']}; by split {s['patches_by_split']}",
             f"regions: {s['patches_by_region']}",
             f"IoU convention: {describe_convention(s['iou_convention'])}"]
    model = s.get("model") or {}
    lines.append(f"model: {model.get('arch')}/{model.get('encoder')} {model.get('path')}")
    pca = s.get("pca") or {}
    evr = pca.get("explained_variance_ratio") or []
    if evr:
        pc2 = evr[1] if len(evr) > 1 else None
        lines.append(f"PCA: {pca.get('n_components')} components, pc1 "
                     f"{format_number(evr[0], percent=True)} %, pc2 "
                     f"{format_number(pc2, percent=True)} % of variance")
    stats = s.get("stats") or {}
    ov = stats.get("overall") or {}
    if ov.get("overall_iou") is not None or ov.get("mean_patch_iou") is not None:
        lines.append(f"overall IoU {format_number(ov.get('overall_iou'), percent=True)}, "
                     f"accuracy {format_number(ov.get('accuracy'), percent=True)}, mean patch "
                     f"IoU {format_number(ov.get('mean_patch_iou'), percent=True)}")
        for key in ("by_region", "by_split"):
            for name, g in (stats.get(key) or {}).items():
                lines.append(f"  {key[3:]} {name}: overall IoU "
                             f"{format_number(g.get('overall_iou'), percent=True)}, mean "
                             f"patch IoU {format_number(g.get('mean_patch_iou'), percent=True)}"
                             f", accuracy {format_number(g.get('accuracy'), percent=True)}, "
                             f"{g.get('patches')} patches")
    for name, e in (s.get("estimators") or {}).items():
        lines.append(f"estimator {name}: cross-validated MAE {format_number(e.get('mae'))}, "
                     f"R2 {format_number(e.get('r2'))}, Spearman "
                     f"{format_number(e.get('spearman'))} ({e.get('folds')} folds by "
                     f"{e.get('grouping')})")
    for name, e in (s.get("estimate_scores") or {}).items():
        lines.append(f"estimate vs real IoU, {name}: MAE {format_number(e.get('mae'))}, "
                     f"R2 {format_number(e.get('r2'))}, Spearman "
                     f"{format_number(e.get('spearman'))}")
    if s.get("est_iou_mean") is not None:
        lines.append(f"mean estimated IoU: {format_number(s['est_iou_mean'])}")
    cl = s.get("clustering") or {}
    if cl:
        lines.append(f"clusters: {cl.get('method')} k={cl.get('k')} silhouette "
                     f"{format_number(cl.get('silhouette'))}")
    nov = s.get("novelty") or {}
    if nov:
        text = f"novelty: k={nov.get('k')} in {nov.get('space_dims')}-D whitened PCA space"
        if nov.get("mean") is not None:
            text += f", mean percentile {format_number(nov.get('mean'))}"
        if nov.get("auroc_vs_reference_val") is not None:
            auroc = nov.get("auroc_vs_reference_val")
            text += f", AUROC vs reference val {format_number(auroc)}"
        lines.append(text)
    lines.extend(region_lines(s.get("region_estimate")))
    lines.extend(baseline_lines(s.get("baselines")))
    if s.get("reference"):
        lines.append(f"reference: {s['reference']}")
    lines.extend(f"note: {n}" for n in s.get("notes") or [])
    return "\n".join(lines)


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Print the summary (text, or JSON with --json) and return it."""
    summary = summarize(args.bundle)
    if progress.mode != "jsonl":
        if args.json:
            sys.stdout.write(json.dumps(summary) + "\n")
        else:
            sys.stdout.write(render(summary) + "\n")
        sys.stdout.flush()
    return summary
