"""`segexplain export-tasks`: a pre-screening task layer (map / skip / check) from a bundle."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..progress import Progress

HELP = "write a MapSwipe-style task layer (map / skip / check per patch) from a bundle"


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `segexplain export-tasks`."""
    parser.add_argument("bundle", type=Path, help="analysis or estimate bundle (.segx)")
    parser.add_argument("--out", required=True, type=Path, help="tasks.gpkg or tasks.geojson")
    parser.add_argument("--format", choices=("gpkg", "geojson"), default=None,
                        help="output format (default: from the --out suffix, else gpkg)")
    parser.add_argument("--building-frac", type=float, default=0.002,
                        help="predicted building fraction from which a patch is a map task")
    parser.add_argument("--novelty-check", type=float, default=95.0,
                        help="novelty percentile from which a patch is a check task")
    parser.add_argument("--uncertain-check", type=float, default=0.05,
                        help="uncertain-pixel fraction making an empty patch a check task")


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Write the task layer; returns the counts per task."""
    from ..bundle.tasks import export_tasks

    fmt = args.format or ("geojson" if args.out.suffix.lower() in (".geojson", ".json")
                          else "gpkg")
    progress.stage("export tasks", 0)
    result = export_tasks(args.bundle, args.out, fmt, building_frac=args.building_frac,
                          novelty_check=args.novelty_check,
                          uncertain_check=args.uncertain_check)
    t = result["tasks"]
    progress.log(f"wrote {result['out']}: {t['map']} map, {t['skip']} skip, "
                 f"{t['check']} check ({result['patches']} patches)")
    return result
