"""Built-in sample data: synthetic aerial scenes in the Inria Aerial Image Labeling layout.

`write_sample_data(out)` writes, deterministically from a seed::

    out/train/images/<region><i>.tif   RGB uint8, 0.3 m pixels, EPSG:32633
    out/train/gt/<region><i>.tif       uint8 0/255 building mask
    out/train/dataset.json             {"val_tiles": [1]}: tile 1 of each region is validation
    out/new/images/informal<i>.tif     the held-out region (different building style)
    out/new/gt/informal<i>.tif
    out/new/dataset.json               {"split": "new"}

Five training regions (metro, suburb, farmland, alpine, industrial) and one held-out
region (informal). Each tile lies at its own origin so that no two tiles overlap.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from ..errors import ConfigurationError
from .render import GSD, Scene, render
from .scenes import HELD_OUT, REGIONS

#: CRS of the sample tiles (UTM zone 33N).
SAMPLE_CRS = "EPSG:32633"
#: Tile size of the `small` variant used in tests.
SMALL_TILE_SIZE = 256
SMALL_TILES = 2


def _region_seed(seed: int, region: str, index: int) -> np.random.SeedSequence:
    key = [ord(ch) for ch in region]
    return np.random.SeedSequence([int(seed), index, *key])


def make_tile(region: str, index: int, *, seed: int = 0, tile_size: int = 1024,
              ) -> tuple[np.ndarray, np.ndarray]:
    """One scene of `region`: (rgb uint8 (3, H, W), mask uint8 (H, W) 0/1)."""
    builders = {**REGIONS, **HELD_OUT}
    if region not in builders:
        raise ConfigurationError(
            f"sample region {region!r} is unknown: expected one of {sorted(builders)}")
    rng = np.random.default_rng(_region_seed(seed, region, index))
    scene = Scene(size=tile_size, rng=rng, base_rgb=(0.5, 0.5, 0.5),
                  sun_az=float(rng.uniform(math.radians(200), math.radians(250))),
                  shadow_len=float(rng.uniform(0.3, 0.6)))
    builders[region](scene)
    return render(scene)


def _origin(region_index: int, tile_index: int, tile_size: int) -> tuple[float, float]:
    """Top-left corner: regions 20 km apart, tiles 2 km apart (never overlapping)."""
    span = max(2000.0, tile_size * GSD * 1.5)
    return 400000.0 + tile_index * span, 5400000.0 - region_index * 20000.0


def _write(path: Path, data: np.ndarray, transform: Any, *, compress: str | None) -> None:
    count = data.shape[0] if data.ndim == 3 else 1
    height, width = data.shape[-2:]
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count,
        "dtype": "uint8", "crs": CRS.from_string(SAMPLE_CRS), "transform": transform,
    }
    if width % 16 == 0 and height % 16 == 0 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    if compress:
        profile["compress"] = compress
    if count == 3:
        profile["photometric"] = "RGB"
    tmp = path.with_name(path.name + ".part")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(data if data.ndim == 3 else data[None])
    os.replace(tmp, path)


def write_sample_data(out_dir: str | os.PathLike[str], seed: int = 0, tile_size: int = 1024,
                      tiles: int = 4, *, small: bool = False,
                      progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Write the sample dataset under `out_dir`; returns folders, tile counts and timing.

    `small` writes 256 px tiles, 2 per region (for tests); `progress(region, n)` is
    called after each tile.
    """
    if small:
        tile_size, tiles = SMALL_TILE_SIZE, SMALL_TILES
    if tile_size < 64 or tile_size > 8192:
        raise ConfigurationError(
            f"tile size {tile_size} px: expected 64 to 8192; pass e.g. --tile-size 1024")
    if tiles < 1:
        raise ConfigurationError(f"tiles per region {tiles}: expected at least 1")
    out = Path(out_dir)
    start = time.perf_counter()
    result: dict[str, Any] = {"out_dir": str(out), "seed": seed, "tile_size": tile_size,
                              "pixel_size_m": GSD, "crs": SAMPLE_CRS, "folders": {}}
    groups: list[tuple[str, list[str], dict[str, Any]]] = [
        ("train", list(REGIONS), {"val_tiles": [1]}),
        ("new", list(HELD_OUT), {"split": "new"})]
    offset = 0
    for folder, regions, meta in groups:
        img_dir, gt_dir = out / folder / "images", out / folder / "gt"
        img_dir.mkdir(parents=True, exist_ok=True)
        gt_dir.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        building_px = 0
        total_px = 0
        for r, region in enumerate(regions):
            for i in range(1, tiles + 1):
                rgb, mask = make_tile(region, i, seed=seed, tile_size=tile_size)
                x0, y0 = _origin(offset + r, i, tile_size)
                transform = from_origin(x0, y0, GSD, GSD)
                name = f"{region}{i}.tif"
                _write(img_dir / name, rgb, transform, compress=None)
                _write(gt_dir / name, (mask * 255).astype(np.uint8), transform,
                       compress="deflate")
                building_px += int(mask.sum())
                total_px += mask.size
                counts[region] = counts.get(region, 0) + 1
                if progress is not None:
                    progress(region, 1)
        offset += len(regions)
        (out / folder / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
        result["folders"][folder] = {
            "path": str(out / folder), "tiles": counts, "n_tiles": sum(counts.values()),
            "building_fraction": round(building_px / max(total_px, 1), 4), **meta,
        }
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result
