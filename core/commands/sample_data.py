"""`segexplain sample-data OUT_DIR`: write the built-in synthetic sample dataset."""

from __future__ import annotations

import argparse
from typing import Any

from ..progress import Progress

HELP = "write synthetic aerial sample data (Inria layout: 5 training regions + 1 held out)"


def configure(p: argparse.ArgumentParser) -> None:
    """Arguments of the command."""
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write train/ and new/ into")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same data)")
    p.add_argument("--tile-size", type=int, default=1024,
                   help="tile width and height in px (default 1024)")
    p.add_argument("--tiles", type=int, default=4, help="tiles per region (default 4)")
    p.add_argument("--small", action="store_true",
                   help="tiny variant for tests: 256 px tiles, 2 per region (overrides both)")


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Write the sample data; returns the folders and tile counts."""
    from ..sample.generate import HELD_OUT, REGIONS, SMALL_TILES, write_sample_data

    tiles = SMALL_TILES if args.small else args.tiles
    progress.stage("sample-data", tiles * (len(REGIONS) + len(HELD_OUT)))
    result = write_sample_data(args.out_dir, seed=args.seed, tile_size=args.tile_size,
                               tiles=args.tiles, small=args.small,
                               progress=lambda region, n: progress.advance(n))
    for name, info in result["folders"].items():
        progress.log(f"{name}: {info['n_tiles']} tiles in {info['path']}")
    return result
