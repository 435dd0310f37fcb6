"""Synthetic bundles for the explorer benchmark, written once and kept under /tmp.

A bundle of a million patches takes a minute or more to write
(`tests/qgis/bundle_factory.py` makes a synthetic table and goes through the real core
writer), so the benchmark keeps
each size it wrote in `$SEGEXPLAIN_BENCH_CACHE` (default `/tmp/segexplain-bench`) under
a key made of the point count and the source of the factory and of the bundle writer:
a change to either writes the bundle again. No QGIS import here.

`SEGEXPLAIN_BENCH_WRITER=/path/to/checkout` writes the bundle with the `segexplain`
package found there instead (the folder holding `segexplain/`, as PYTHONPATH takes it):
to compare bundle writers, e.g. one that also stores the patches columns as arrays.

    python bench/bundle_cache.py 1000000    # write (or find) the bundle, print its path
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTORY = ROOT / "tests" / "qgis" / "bundle_factory.py"
N_IMAGES = 4


def writer_root() -> Path:
    """The `segexplain` package that writes the bundles (this checkout by default)."""
    other = os.environ.get("SEGEXPLAIN_BENCH_WRITER")
    return Path(other) / "segexplain" if other else ROOT


def sources() -> list[Path]:
    """Files whose change changes the bundle: the factory and the core's bundle writer."""
    bundle = writer_root() / "core" / "bundle"
    return [FACTORY, *(p for p in (bundle / "writer.py", bundle / "gpkg.py") if p.is_file())]


def cache_root() -> Path:
    """Folder holding the cached bundles."""
    return Path(os.environ.get("SEGEXPLAIN_BENCH_CACHE", "/tmp/segexplain-bench"))


def cache_key(points: int) -> str:
    """Point count + hash of the factory's and the writer's source."""
    h = hashlib.sha256()
    for src in sources():
        h.update(src.read_bytes())
    return f"{points}-{h.hexdigest()[:12]}"


def grid_for(points: int, n_images: int = N_IMAGES) -> tuple[int, int]:
    """Patches per image as a near-square grid (gx, gy) giving at least `points` in all."""
    per = max(1, -(-points // n_images))
    gx = max(1, int(round(per ** 0.5)))
    gy = -(-per // gx)
    return gx, gy


def cached_bundle(points: int) -> tuple[Path, float | None]:
    """(bundle path, seconds spent writing it now or None when it came from the cache)."""
    sys.path.insert(0, str(FACTORY.parent))
    import bundle_factory  # the plugin tests' factory (writes in a child process)

    folder = cache_root() / cache_key(points)
    path = folder / "bench.segx"
    if (path / "manifest.json").is_file():
        return path, None
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted write
    folder.mkdir(parents=True)
    old = os.environ.get("PYTHONPATH")
    if os.environ.get("SEGEXPLAIN_BENCH_WRITER"):
        os.environ["PYTHONPATH"] = os.environ["SEGEXPLAIN_BENCH_WRITER"]  # the child's
    t = time.perf_counter()
    try:
        bundle_factory.write_bundle(path, n_images=N_IMAGES, grid=grid_for(points),
                                    patch_px=4, thumb=8, n_clusters=14, seed=0)
    finally:
        if old is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = old
    return path, time.perf_counter() - t


if __name__ == "__main__":
    p, s = cached_bundle(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
    print(p, "cached" if s is None else f"written in {s:.1f} s")
