"""Known label errors in a copy of a data set: the test bed of the label-error finder.

`corrupt_labels(src, dst)` copies an Inria-layout split (images linked, `gt/` rewritten)
and corrupts the labels of a seeded random share `fraction` of the patch windows (the
analysis grid: `patch_size` squares from the image origin). In each chosen window:

- every building whose centre lies in it is dropped with probability `drop`: a
  building the labels lack;
- `add` x its building count fake rectangular buildings (one when nothing was dropped),
  20-50 px a side (6-15 m at 0.3 m), are drawn where the label is empty with a 3 px
  margin: a label with no building under it.

With the defaults (a fifth of the windows, half of their buildings dropped, a tenth
added) about 10 % of all buildings are dropped and fakes worth about 5 % are added
(9-11 % and 5-6 % on the sample data for seeds 0-2). The
corrupted windows are those whose label changed (a dropped building can reach into a
neighbour); they are returned and written to `dst/corruption.json`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigurationError, EmptyInputError

#: fake building side range (px)
FAKE_SIDE = (20, 50)
#: empty margin around a fake building (px)
FAKE_MARGIN = 3


def _add_fakes(lab: np.ndarray, r0: int, c0: int, size: int, want: int,
               rng: np.random.Generator) -> int:
    """Draw up to `want` fake buildings inside the window at (r0, c0); returns how many."""
    h, w = min(size, lab.shape[0] - r0), min(size, lab.shape[1] - c0)
    added = 0
    for _ in range(50 * want):
        if added >= want:
            break
        sh, sw = (int(rng.integers(FAKE_SIDE[0], FAKE_SIDE[1] + 1)) for _ in range(2))
        if sh + 2 * FAKE_MARGIN >= h or sw + 2 * FAKE_MARGIN >= w:
            break
        r = r0 + int(rng.integers(FAKE_MARGIN, h - sh - FAKE_MARGIN))
        c = c0 + int(rng.integers(FAKE_MARGIN, w - sw - FAKE_MARGIN))
        if lab[r - FAKE_MARGIN:r + sh + FAKE_MARGIN, c - FAKE_MARGIN:c + sw + FAKE_MARGIN].any():
            continue
        lab[r:r + sh, c:c + sw] = 1
        added += 1
    return added


def _corrupt_image(lab: np.ndarray, size: int, fraction: float, drop: float, add: float,
                   rng: np.random.Generator) -> tuple[list[dict[str, Any]], int]:
    """Corrupt one 0/1 label in place; returns the changed windows and its building count."""
    from scipy.ndimage import center_of_mass
    from scipy.ndimage import label as components

    before = lab.copy()
    comp, n = components(lab, structure=np.ones((3, 3), int))
    centres = np.array(center_of_mass(lab, comp, range(1, n + 1))).reshape(-1, 2)
    cell = (centres // size).astype(int)
    grid = [(r0, c0) for r0 in range(0, lab.shape[0], size)
            for c0 in range(0, lab.shape[1], size)]
    chosen = [g for g in grid if rng.random() < fraction]
    dropped: dict[tuple[int, int], int] = {}
    added: dict[tuple[int, int], int] = {}
    for r0, c0 in chosen:
        mine = np.flatnonzero((cell[:, 0] == r0 // size) & (cell[:, 1] == c0 // size)) + 1
        gone = [int(i) for i in mine if rng.random() < drop]
        if gone:
            lab[np.isin(comp, gone)] = 0
        dropped[(r0, c0)] = len(gone)
        want = round(add * mine.size) or (0 if gone else 1)
        added[(r0, c0)] = _add_fakes(lab, r0, c0, size, want, rng)
    records = []
    for r0, c0 in grid:   # every window whose label changed (a dropped building may spill)
        if np.array_equal(lab[r0:r0 + size, c0:c0 + size], before[r0:r0 + size, c0:c0 + size]):
            continue
        records.append({"row_off": r0, "col_off": c0, "dropped": dropped.get((r0, c0), 0),
                        "added": added.get((r0, c0), 0)})
    return records, n


def corrupt_labels(src: str | Path, dst: str | Path, *, patch_size: int = 256,
                   fraction: float = 0.2, drop: float = 0.5, add: float = 0.1,
                   seed: int = 0) -> list[dict[str, Any]]:
    """Copy split folder `src` (images/, gt/, dataset.json) to `dst` with corrupted labels.

    Returns one record per corrupted window: image, row_off, col_off, dropped, added.
    """
    import rasterio

    src, dst = Path(src), Path(dst)
    if not 0.0 < fraction <= 1.0 or not 0.0 <= drop <= 1.0 or add < 0:
        raise ConfigurationError(f"fraction {fraction}, drop {drop}, add {add}: expected "
                                 "0 < fraction <= 1, 0 <= drop <= 1, add >= 0")
    gts = sorted((src / "gt").glob("*.tif"))
    if not gts:
        raise EmptyInputError(f"{src}/gt: no label GeoTIFFs; pass a split folder of the "
                              "Inria layout (e.g. the sample data's train/)")
    if dst.exists():
        shutil.rmtree(dst)
    (dst / "gt").mkdir(parents=True)
    os.symlink((src / "images").resolve(), dst / "images")
    if (src / "dataset.json").is_file():
        shutil.copy(src / "dataset.json", dst / "dataset.json")
    rng = np.random.default_rng(seed)
    records: list[dict[str, Any]] = []
    buildings = 0
    on = 1   # the data set's building value (0/1 or 0/255 masks), from all its labels
    for gt in gts:
        with rasterio.open(gt) as ds:
            on = max(on, int(ds.read(1).max()))
    for gt in gts:
        with rasterio.open(gt) as ds:
            profile = ds.profile
            raw = ds.read(1)
        lab = (raw > 0).astype(np.uint8)
        changed, n = _corrupt_image(lab, patch_size, fraction, drop, add, rng)
        buildings += n
        records.extend({"image": gt.stem, **r} for r in changed)
        with rasterio.open(dst / "gt" / gt.name, "w", **profile) as out:
            out.write((lab * on).astype(raw.dtype), 1)
    (dst / "corruption.json").write_text(json.dumps(
        {"patch_size": patch_size, "fraction": fraction, "drop": drop, "add": add,
         "seed": seed, "buildings": buildings,
         "dropped": sum(r["dropped"] for r in records),
         "added": sum(r["added"] for r in records), "windows": records}, indent=1) + "\n")
    return records
