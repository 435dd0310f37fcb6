"""`segexplain export-tasks`: a pre-screening task layer (map / skip / check) from a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Progress

HELP = ("write a MapSwipe-style task layer (map / skip / check per patch), or with "
        "--kind label-review the patches whose labels to check first, from a bundle")


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `segexplain export-tasks`."""
    parser.add_argument("bundle", type=Path, help="analysis or estimate bundle (.segx)")
    parser.add_argument("--out", required=True, type=Path, help="tasks.gpkg or tasks.geojson")
    parser.add_argument("--kind", choices=("tasks", "label-review"), default="tasks",
                        help="tasks: map / skip / check per patch; label-review: patches "
                             "where a confident prediction contradicts the label, ranked")
    parser.add_argument("--format", choices=("gpkg", "geojson"), default=None,
                        help="output format (default: from the --out suffix, else gpkg)")
    parser.add_argument("--building-frac", type=float, default=0.002,
                        help="predicted building fraction from which a patch is a map task")
    parser.add_argument("--novelty-check", type=float, default=95.0,
                        help="novelty percentile from which a patch is a check task")
    parser.add_argument("--uncertain-check", type=float, default=0.05,
                        help="uncertain-pixel fraction making an empty patch a check task")
    parser.add_argument("--min-label-error", type=float, default=0.005,
                        help="label-review: smallest label-disagreement score kept (share "
                             "of the patch's pixels)")
    parser.add_argument("--top", type=int, default=None,
                        help="label-review: keep at most this many patches")


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Write the task layer; returns the counts per task."""
    from ..bundle.label_review import export_label_review
    from ..bundle.tasks import export_tasks

    fmt = args.format or ("geojson" if args.out.suffix.lower() in (".geojson", ".json")
                          else "gpkg")
    progress.stage("export tasks", 0)
    if args.kind == "label-review":
        review = export_label_review(args.bundle, args.out, fmt,
                                     min_score=args.min_label_error, top=args.top)
        r = review["review"]
        progress.log(f"wrote {review['out']}: {review['patches']} of {review['of']} labelled "
                     f"patches to review ({r['missing building?']} missing building?, "
                     f"{r['label without building?']} label without building?)")
        return review
    result = export_tasks(args.bundle, args.out, fmt, building_frac=args.building_frac,
                          novelty_check=args.novelty_check,
                          uncertain_check=args.uncertain_check)
    t = result["tasks"]
    progress.log(f"wrote {result['out']}: {t['map']} map, {t['skip']} skip, "
                 f"{t['check']} check ({result['patches']} patches)")
    return result
