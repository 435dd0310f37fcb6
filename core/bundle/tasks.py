"""Pre-screening tasks for volunteer mapping (MapSwipe-style) from a bundle's patches.

Every patch gets a `task`:

- ``map``: the model predicts buildings here (pred_frac >= `building_frac`): send it to
  mappers;
- ``skip``: nothing to tag (no predicted buildings) and the model is on familiar ground
  with a confident prediction: volunteers need not look;
- ``check``: a person should look first: the patch lies far from the model's training
  data (novelty >= `novelty_check`, a percentile), or it has no predicted building
  but many uncertain pixels (uncertain_frac >= `uncertain_check`), or no prediction at
  all (encoder-only runs).

Patches keep est_iou and novelty so that `map` tasks can be ordered by how much the
model's footprints can be trusted. The layer is written as a GeoPackage (image CRS) or
GeoJSON (RFC 7946: WGS 84 longitude / latitude).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigurationError, UnreadableFileError
from .reader import Bundle
from .writer import _ogr, write_gpkg_layer

TASKS = ("map", "skip", "check")
TASK_FIELDS = {"patch_id": "int64", "image": "text", "region": "text", "task": "text",
               "est_iou": "real", "novelty": "real", "pred_frac": "real",
               "uncertain_frac": "real", "iou": "real"}


def assign_tasks(pred_frac: np.ndarray, novelty: np.ndarray, uncertain_frac: np.ndarray, *,
                 building_frac: float = 0.002, novelty_check: float = 95.0,
                 uncertain_check: float = 0.05) -> np.ndarray:
    """Assign each patch a task ("map", "skip" or "check"), see the module doc."""
    pf = np.asarray(pred_frac, np.float64)
    nov = np.asarray(novelty, np.float64)
    unc = np.asarray(uncertain_frac, np.float64)
    task = np.where(pf >= building_frac, "map", "skip").astype(object)
    unsure = (~np.isfinite(pf)) | (nov >= novelty_check) | (
        (task == "skip") & np.isfinite(unc) & (unc >= uncertain_check))
    task[unsure] = "check"
    return task


def export_tasks(bundle: str | Path, out: str | Path, fmt: str = "gpkg", *,
                 building_frac: float = 0.002, novelty_check: float = 95.0,
                 uncertain_check: float = 0.05) -> dict[str, Any]:
    """Write the task layer of `bundle` to `out`; returns counts per task."""
    if fmt not in ("gpkg", "geojson"):
        raise ConfigurationError(f"--format {fmt!r}: expected gpkg or geojson")
    b = Bundle(bundle)
    cols = b.patches
    task = assign_tasks(cols["pred_frac"], cols["novelty"], cols["uncertain_frac"],
                        building_frac=building_frac, novelty_check=novelty_check,
                        uncertain_check=uncertain_check)
    rows = {k: cols[k] for k in TASK_FIELDS if k in cols}
    rows["task"] = task
    write_task_layer(out, fmt, "tasks", TASK_FIELDS, rows, patch_footprints(b),
                     b.manifest.get("crs_wkt"))
    counts = {t: int((task == t).sum()) for t in TASKS}
    return {"out": str(out), "format": fmt, "patches": int(task.size), "tasks": counts}


def write_task_layer(out: str | Path, fmt: str, layer: str, fields: dict[str, str],
                     rows: dict[str, Any], geoms: list[Any], crs_wkt: str | None) -> None:
    """Write one layer to a new GeoPackage / GeoJSON `out` (replaced atomically)."""
    if fmt not in ("gpkg", "geojson"):
        raise ConfigurationError(f"--format {fmt!r}: expected gpkg or geojson")
    out = Path(out)
    if out.exists():
        try:
            out.unlink()
        except OSError as exc:
            raise UnreadableFileError(f"{out}: cannot replace it ({exc}); choose another "
                                      "--out") from exc
    tmp = out.with_name(f".{out.stem}.partial-{os.getpid()}{out.suffix}")
    tmp.unlink(missing_ok=True)
    driver = "GPKG" if fmt == "gpkg" else "GeoJSON"
    options = ["RFC7946=YES"] if fmt == "geojson" else []
    write_gpkg_layer(tmp, layer, fields, rows, geoms, crs_wkt, driver=driver, options=options)
    tmp.replace(out)


def patch_footprints(b: Bundle) -> list[Any]:
    """Patch footprints (shapely) of the bundle ordered by patch_id."""
    from shapely import wkb

    ogr, _ = _ogr()
    ds = ogr.Open(str(b.gpkg))
    layer = ds.GetLayerByName("patches")
    geoms: dict[int, Any] = {}
    for feat in layer:
        geom = feat.GetGeometryRef()
        geoms[int(feat.GetField("patch_id"))] = wkb.loads(bytes(geom.ExportToWkb()))
    ds = None  # noqa: F841
    return [geoms[i] for i in sorted(geoms)]
