"""Write an analysis bundle atomically (see docs/bundle-format.md).

The bundle is built in `NAME.segx.partial-<pid>/` next to the target; `finish` hashes
every file, writes `manifest.json` last (through a temporary file and `os.replace`) and
renames the folder to `NAME.segx`, replacing an older bundle only then. An exception
inside the `with` block removes the partial folder; a killed process leaves a
`.partial-<pid>` folder that no reader mistakes for a bundle (no manifest, wrong name).

The GeoPackage is written with GDAL's OGR (Debian's python3-gdal, the library QGIS
itself uses); arrays are `.npy` without pickled objects; rasters are GeoTIFFs.

The patches layer is written in bulk (`write_patches_layer`): OGR creates the empty
layer (schema, CRS, GeoPackage metadata), the rows go in through sqlite3 in one
transaction (fid 1..N in patch_id order, geometry blobs built from shapely's vectorised
WKB), `gpkg_ogr_contents.feature_count` and the layer extent are set, and OGR builds the
R-tree spatial index in one statement (`CreateSpatialIndex`). Feature by feature through
OGR a million patches took minutes; in bulk about 10 s (`bench/analytics.py`). The same
columns are also written as `columns/*.npy` (see `reader.read_columns`).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..engine.records import ImageRecord, PatchTable
from ..errors import ConfigurationError, DependencyError, UnreadableFileError
from ..files import cleanup_partials, file_sha256
from .reader import COLUMNS_DIR, GPKG, MANIFEST, SCHEMA, SCHEMA_VERSION

#: patches-layer fields in order: name -> OGR kind ("int", "int64", "real", "text")
PATCH_FIELDS: dict[str, str] = {
    "patch_id": "int64", "image": "text", "region": "text", "split": "text",
    "row_off": "int", "col_off": "int", "height": "int", "width": "int",
    "iou": "real", "est_iou": "real", "est_iou_2d": "real", "pc1": "real", "pc2": "real",
    "cluster": "int", "label_frac": "real", "pred_frac": "real", "accuracy": "real",
    "precision": "real", "recall": "real", "entropy": "real", "confidence": "real",
    "uncertain_frac": "real", "novelty": "real", "covered": "int", "label_error": "real",
    "conf_fp_frac": "real", "conf_fn_frac": "real",
}

CLUSTER_FIELDS: dict[str, str] = {
    "cluster": "int", "size": "int", "mean_iou": "real", "median_iou": "real",
    "label_frac": "real", "pred_frac": "real", "region_mix": "text", "representatives": "text",
}




def json_safe(obj: Any) -> Any:
    """`obj` with numpy scalars/arrays as Python values and NaN/inf as None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _ogr() -> Any:
    try:
        from osgeo import ogr, osr
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise DependencyError(
            "GDAL's Python bindings (osgeo) are missing: install python3-gdal (Debian) or "
            "the GDAL wheel matching your libgdal, then run again") from exc
    ogr.UseExceptions()
    osr.UseExceptions()
    return ogr, osr


_OGR_TYPES = {"int": "OFTInteger", "int64": "OFTInteger64", "real": "OFTReal",
              "text": "OFTString"}


def _set(feature: Any, name: str, kind: str, value: Any) -> None:
    if value is None or (kind in ("real", "int", "int64") and isinstance(value, float)
                         and not math.isfinite(value)):
        feature.SetFieldNull(name)
    elif kind == "real":
        feature.SetField(name, float(value))
    elif kind in ("int", "int64"):
        feature.SetField(name, int(value))
    else:
        feature.SetField(name, value if isinstance(value, str) else json.dumps(json_safe(value)))


def write_gpkg_layer(path: Path, name: str, fields: Mapping[str, str],
                     rows: Sequence[Mapping[str, Any]] | Mapping[str, np.ndarray],
                     geometries: Sequence[Any] | None = None, crs_wkt: str | None = None,
                     driver: str = "GPKG", options: Sequence[str] = ()) -> None:
    """Append a layer (or a table without geometry) to an OGR data source.

    `rows` is a list of dicts or a dict of equal-length columns; `geometries` are shapely
    geometries (one per row) in `crs_wkt`.
    """
    ogr, osr = _ogr()
    drv = ogr.GetDriverByName(driver)
    ds = drv.Open(str(path), 1) if path.exists() and driver == "GPKG" else None
    if ds is None:
        ds = drv.CreateDataSource(str(path))
    srs = None
    if crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gtype = ogr.wkbPolygon if geometries is not None else ogr.wkbNone
    layer = ds.CreateLayer(name, srs, gtype, options=list(options))
    for fname, kind in fields.items():
        layer.CreateField(ogr.FieldDefn(fname, getattr(ogr, _OGR_TYPES[kind])))
    defn = layer.GetLayerDefn()
    if isinstance(rows, Mapping):
        n = len(next(iter(rows.values()))) if rows else 0
        cols = {k: (np.asarray(v).tolist()) for k, v in rows.items()}
        get = lambda i, k: cols[k][i] if k in cols else None  # noqa: E731
    else:
        n = len(rows)
        get = lambda i, k: rows[i].get(k)  # noqa: E731
    layer.StartTransaction()
    for i in range(n):
        feat = ogr.Feature(defn)
        for fname, kind in fields.items():
            _set(feat, fname, kind, get(i, fname))
        if geometries is not None:
            feat.SetGeometry(ogr.CreateGeometryFromWkb(bytes(geometries[i].wkb)))
        layer.CreateFeature(feat)
    layer.CommitTransaction()
    ds = None  # noqa: F841  (closes and flushes)


def _gpkg_geometry_blobs(geometries: Sequence[Any], srs_id: int) -> list[bytes | None]:
    """GeoPackage geometry blobs: 'GP' header with the xy envelope, then little-endian WKB."""
    import shapely

    geoms = np.asarray(geometries, dtype=object)
    wkb = shapely.to_wkb(geoms, byte_order=1)
    bounds = shapely.bounds(geoms)                      # minx, miny, maxx, maxy
    head = np.zeros(len(geoms), dtype=[("magic", "S2"), ("version", "u1"), ("flags", "u1"),
                                       ("srs_id", "<i4"), ("env", "<f8", (4,))])
    head["magic"], head["flags"], head["srs_id"] = b"GP", 0b011, srs_id  # LE, xy envelope
    head["env"] = bounds[:, [0, 2, 1, 3]]
    raw = head.tobytes()
    size = head.dtype.itemsize
    return [None if w is None else raw[i * size:(i + 1) * size] + w
            for i, w in enumerate(wkb.tolist())]


def _sql_values(values: np.ndarray | None, kind: str, n: int) -> list[Any]:
    """A column as Python values for sqlite3 (NaN / inf -> NULL; text as str, JSON else)."""
    if values is None:
        return [None] * n
    v = np.asarray(values)
    if kind in ("real", "int", "int64") and v.dtype.kind in "fc":
        finite = np.isfinite(v)
        out = (v.astype(np.float64) if kind == "real" else
               np.where(finite, v, 0).astype(np.int64)).astype(object)
        out[~finite] = None
        return list(out.tolist())
    if kind == "real":
        return list(v.astype(np.float64).tolist())
    if kind in ("int", "int64"):
        return list(v.astype(np.int64).tolist())
    return [x if x is None or isinstance(x, str) else json.dumps(json_safe(x))
            for x in v.tolist()]


def write_patches_layer(path: Path, name: str, fields: Mapping[str, str],
                        columns: Mapping[str, np.ndarray], geometries: Sequence[Any],
                        crs_wkt: str | None) -> None:
    """Write a polygon layer in bulk: OGR makes the empty layer, sqlite3 fills it.

    Rows get fid 1..N in the order given; the R-tree index is built once at the end.
    """
    n = len(geometries)
    write_gpkg_layer(path, name, fields, {}, [], crs_wkt,
                     options=["FID=fid", "SPATIAL_INDEX=NO", "GEOMETRY_NAME=geom"])
    con = sqlite3.connect(path)
    try:
        srs_id = int(con.execute("SELECT srs_id FROM gpkg_geometry_columns WHERE "
                                 "table_name = ?", (name,)).fetchone()[0])
        values = [_sql_values(columns.get(f), kind, n) for f, kind in fields.items()]
        blobs = _gpkg_geometry_blobs(geometries, srs_id)
        names = ", ".join(f'"{f}"' for f in ("fid", "geom", *fields))
        marks = ", ".join("?" * (len(fields) + 2))
        triggers = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                               "AND tbl_name = ?", (name,)).fetchall()
        # the file sits in the bundle's partial folder until it is complete: no journal
        con.execute("PRAGMA journal_mode = OFF")
        con.execute("PRAGMA synchronous = OFF")
        with con:
            for trig, _ in triggers:  # per-row feature-count triggers: set the count once
                con.execute(f'DROP TRIGGER "{trig}"')
            # table and column names are the writer's own (PATCH_FIELDS), never input
            insert = f'INSERT INTO "{name}" ({names}) VALUES ({marks})'  # noqa: S608  # nosec
            con.executemany(insert, zip(range(1, n + 1), blobs, *values, strict=True))
            for _, sql in triggers:
                con.execute(sql)
            con.execute("UPDATE gpkg_ogr_contents SET feature_count = ? WHERE "
                        "lower(table_name) = lower(?)", (n, name))
            if n:
                import shapely

                b = shapely.bounds(np.asarray(geometries, dtype=object))
                con.execute("UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, "
                            "max_y = ? WHERE table_name = ?",
                            (float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1])),
                             float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3])), name))
    finally:
        con.close()
    ogr, _ = _ogr()
    ds = ogr.Open(str(path), 1)
    ds.ExecuteSQL(f"SELECT CreateSpatialIndex('{name}', 'geom')")
    ds = None  # noqa: F841  (closes and flushes)


def write_columns(folder: Path, fields: Mapping[str, str],
                  columns: Mapping[str, np.ndarray]) -> None:
    """The columns as `NAME.npy` (numbers) or `NAME.codes.npy` + `NAME.labels.npy` (text).

    Numbers keep the dtype they were written to the GeoPackage from (equal values);
    an integer field holding NaN is stored as float64 (NaN = NULL). Text: int32 codes
    into a unicode label array, -1 = NULL.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind in fields.items():
        if name not in columns:
            continue
        v = np.asarray(columns[name])
        if kind == "text":
            text = v.astype(object)
            null = np.array([x is None for x in text.tolist()], bool)
            labels, codes = np.unique(np.where(null, "", text.astype(str)),
                                      return_inverse=True)
            codes = codes.ravel().astype(np.int32)
            if null.any():
                used = np.unique(codes[~null])
                remap = np.full(labels.size, -1, np.int32)
                remap[used] = np.arange(used.size, dtype=np.int32)
                labels, codes = labels[used], remap[codes]
                codes[null] = -1
            np.save(folder / f"{name}.codes.npy", codes, allow_pickle=False)
            np.save(folder / f"{name}.labels.npy", labels.astype(str), allow_pickle=False)
            continue
        if kind == "real":
            a = v if v.dtype in (np.float32, np.float64) else v.astype(np.float64)
        elif v.dtype.kind in "fc" and not np.isfinite(v).all():
            a = np.where(np.isfinite(v), v, np.nan).astype(np.float64)
        else:
            a = v.astype(np.int64)
        np.save(folder / f"{name}.npy", a, allow_pickle=False)


def rows_by_image(columns: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Row indices of each image's patches (one pass over the column, in row order)."""
    names = np.asarray(columns["image"]).astype(str)
    uniq, inv = np.unique(names, return_inverse=True)
    order = np.argsort(inv.ravel(), kind="stable")
    bounds = np.searchsorted(inv.ravel()[order], np.arange(uniq.size + 1))
    return {str(u): order[bounds[i]:bounds[i + 1]] for i, u in enumerate(uniq)}


def est_iou_raster(image: ImageRecord, columns: Mapping[str, np.ndarray],
                   values: np.ndarray, cell: int,
                   rows: np.ndarray | None = None) -> tuple[np.ndarray, tuple[float, ...]]:
    """Grid `values` per patch cell for one image and its GDAL-order transform.

    Cells are `cell` x `cell` image pixels from the image's origin (so the grid is aligned
    with the image); a cell holds the mean value of the patches whose window overlaps it,
    NaN where none does. `rows`: the image's rows (`rows_by_image`), found if None.
    """
    rows_n = math.ceil(image.height / cell)
    cols_n = math.ceil(image.width / cell)
    sel = (rows if rows is not None else
           np.flatnonzero(np.asarray(columns["image"]).astype(str) == image.name))
    v = np.asarray(values, np.float64)[sel]
    ok = np.isfinite(v)
    sel, v = sel[ok], v[ok]
    r_off = np.asarray(columns["row_off"], np.int64)[sel]
    c_off = np.asarray(columns["col_off"], np.int64)[sel]
    r0, c0 = r_off // cell, c_off // cell
    r1 = -(-(r_off + np.asarray(columns["height"], np.int64)[sel]) // cell)
    c1 = -(-(c_off + np.asarray(columns["width"], np.int64)[sel]) // cell)
    nr, nc = np.maximum(r1 - r0, 0), np.maximum(c1 - c0, 1)
    cnt = nr * np.maximum(c1 - c0, 0)
    rep = np.repeat(np.arange(sel.size), cnt)
    k = np.arange(rep.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    rr, cc = r0[rep] + k // nc[rep], c0[rep] + k % nc[rep]
    inside = (rr < rows_n) & (cc < cols_n)
    flat = (rr * cols_n + cc)[inside]
    total = np.bincount(flat, weights=v[rep][inside], minlength=rows_n * cols_n)
    count = np.bincount(flat, minlength=rows_n * cols_n)
    grid = np.full(rows_n * cols_n, np.nan, np.float32)
    np.divide(total, count, out=grid, where=count > 0, casting="unsafe")
    a, b, c, d, e, f = image.transform[:6]
    return grid.reshape(rows_n, cols_n), (a * cell, b * cell, c, d * cell, e * cell, f)


def write_float_raster(path: Path, grid: np.ndarray, transform: Sequence[float],
                       crs_wkt: str) -> None:
    """Write a single-band float32 GeoTIFF with NaN nodata."""
    import rasterio
    from affine import Affine

    with rasterio.open(path, "w", driver="GTiff", width=grid.shape[1], height=grid.shape[0],
                       count=1, dtype="float32", crs=rasterio.crs.CRS.from_wkt(crs_wkt),
                       transform=Affine(*transform[:6]), nodata=float("nan"),
                       compress="deflate") as dst:
        dst.write(grid.astype(np.float32), 1)


class BundleWriter:
    """Context manager that builds `out` (NAME.segx) in a partial folder, then publishes it."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.suffix != ".segx":
            raise ConfigurationError(f"--out {self.out}: expected a name ending in .segx "
                                     "(e.g. austin.segx)")
        self.partial = self.out.with_name(f"{self.out.name}.partial-{os.getpid()}")
        self._done = False

    # -- lifecycle ------------------------------------------------------------
    def __enter__(self) -> BundleWriter:
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            cleanup_partials(self.out)  # leftovers of killed runs
            if self.partial.exists():
                shutil.rmtree(self.partial)
            (self.partial / "rasters").mkdir(parents=True)
            (self.partial / "arrays").mkdir()
        except OSError as exc:
            raise UnreadableFileError(f"{self.partial}: cannot create the bundle folder "
                                      f"({exc}); choose a writable --out") from exc
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._done and self.partial.exists():
            shutil.rmtree(self.partial, ignore_errors=True)

    @property
    def raster_dir(self) -> Path:
        """Folder where the engine writes the aligned rasters."""
        return self.partial / "rasters"

    @property
    def gpkg(self) -> Path:
        """The GeoPackage being written."""
        return self.partial / GPKG

    # -- content --------------------------------------------------------------
    def write_array(self, name: str, array: np.ndarray) -> None:
        """`arrays/NAME.npy` (numeric arrays only: never object arrays)."""
        a = np.asarray(array)
        if a.dtype.hasobject:
            raise ConfigurationError(f"array {name!r} holds Python objects; bundles store "
                                     "plain numeric arrays only")
        np.save(self.partial / "arrays" / f"{name}.npy", a, allow_pickle=False)

    def write_patches(self, table: PatchTable, extra: Mapping[str, np.ndarray]) -> None:
        """Write the `patches` layer: the table's columns plus `extra` (pc1, est_iou...)."""
        cols: dict[str, np.ndarray] = {}
        for name in PATCH_FIELDS:
            if name in extra:
                cols[name] = np.asarray(extra[name])
            elif name in table.columns:
                cols[name] = np.asarray(table.columns[name])
        cols["patch_id"] = np.arange(len(table), dtype=np.int64)
        write_patches_layer(self.gpkg, "patches", PATCH_FIELDS, cols, table.footprints,
                            table.crs_wkt)
        write_columns(self.partial / COLUMNS_DIR, PATCH_FIELDS, cols)

    def write_clusters(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Write the `clusters` table."""
        write_gpkg_layer(self.gpkg, "clusters", CLUSTER_FIELDS, rows)

    def write_run_metadata(self, meta: Mapping[str, Any]) -> None:
        """Write the `run_metadata` table: key -> JSON value."""
        rows = [{"key": k, "value": json.dumps(json_safe(v))} for k, v in meta.items()]
        write_gpkg_layer(self.gpkg, "run_metadata", {"key": "text", "value": "text"}, rows)

    def relative(self, path: str | None) -> str | None:
        """Turn a path inside the partial folder into a bundle-relative one."""
        if not path:
            return path
        p = Path(path)
        try:
            return p.resolve().relative_to(self.partial.resolve()).as_posix()
        except ValueError:
            return str(p)

    def finish(self, manifest: Mapping[str, Any]) -> Path:
        """Hash files, write the manifest last and publish the folder as `out`."""
        files = {}
        for p in sorted(self.partial.rglob("*")):
            if p.is_file() and p.name != MANIFEST:
                files[p.relative_to(self.partial).as_posix()] = file_sha256(p)
        doc = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **json_safe(manifest),
               "complete": True, "files": files}
        tmp = self.partial / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps(doc, indent=1, allow_nan=False), encoding="utf-8")
        os.replace(tmp, self.partial / MANIFEST)
        old = None
        if self.out.exists():
            old = self.out.with_name(f"{self.out.name}.old-{os.getpid()}")
            os.replace(self.out, old)
        os.replace(self.partial, self.out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        self._done = True
        return self.out
