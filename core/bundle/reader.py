"""Read an analysis bundle with numpy and the standard library only.

The QGIS plugin uses this module: it must not import torch, sklearn, rasterio or any
other worker package. Arrays are `.npy` files read with `allow_pickle=False`; attributes
come from the GeoPackage through sqlite3 (a GeoPackage is a SQLite database).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BundleError, IncompleteBundleError

SCHEMA = "segexplain-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
GPKG = "patches.gpkg"


def resolve_bundle_path(path: str | Path) -> Path:
    """The bundle folder for a path to the folder, its manifest or its GeoPackage."""
    p = Path(path)
    if p.name in (MANIFEST, GPKG) and p.parent.suffix == ".segx":
        return p.parent
    return p


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a complete bundle; refuses missing, partial or foreign folders."""
    root = resolve_bundle_path(path)
    if not root.is_dir():
        raise BundleError(f"{root}: not a folder; expected an analysis bundle NAME.segx/ "
                          "written by `segexplain analyze` or `segexplain estimate`")
    mf = root / MANIFEST
    if not mf.is_file():
        raise IncompleteBundleError(
            f"{root}: no {MANIFEST}; the bundle was never finished (killed run or copy in "
            "progress): run the analysis again, or with --resume")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IncompleteBundleError(f"{mf}: unreadable manifest ({exc}); run the analysis "
                                    "again") from exc
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise BundleError(f"{mf}: not a segexplain bundle manifest (schema "
                          f"{manifest.get('schema') if isinstance(manifest, dict) else None!r})")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise BundleError(f"{mf}: schema version {version!r}; this segexplain reads "
                          f"version {SCHEMA_VERSION} or older: update segexplain")
    if not manifest.get("complete"):
        raise IncompleteBundleError(f"{root}: marked incomplete; run the analysis again")
    missing = [name for name in manifest.get("files", {}) if not (root / name).is_file()]
    if missing:
        raise IncompleteBundleError(
            f"{root}: {len(missing)} file(s) listed in the manifest are missing "
            f"({', '.join(missing[:3])}); copy the whole bundle folder or run the analysis again")
    return manifest


def load_array(path: str | Path, name: str) -> np.ndarray:
    """One array of `arrays/NAME.npy`, never unpickling."""
    f = resolve_bundle_path(path) / "arrays" / f"{name}.npy"
    try:
        return np.load(f, allow_pickle=False)
    except FileNotFoundError as exc:
        raise IncompleteBundleError(f"{f}: missing array; the bundle is incomplete") from exc
    except ValueError as exc:
        raise BundleError(f"{f}: not a plain numeric array ({exc})") from exc


def has_array(path: str | Path, name: str) -> bool:
    """Whether `arrays/NAME.npy` exists."""
    return (resolve_bundle_path(path) / "arrays" / f"{name}.npy").is_file()


def gpkg_path(path: str | Path) -> Path:
    """The GeoPackage of a bundle (folder, manifest or GeoPackage path), or a .gpkg itself."""
    p = Path(path)
    return p if p.suffix.lower() == ".gpkg" else resolve_bundle_path(p) / GPKG


@contextmanager
def open_gpkg(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only SQLite connection to a GeoPackage; SQLite errors become BundleError."""
    gpkg = gpkg_path(path)
    if not gpkg.is_file():
        raise IncompleteBundleError(f"{gpkg}: missing GeoPackage; the bundle is incomplete")
    try:
        con = sqlite3.connect(f"{gpkg.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BundleError(f"{gpkg}: cannot be opened ({exc}); copy the bundle again") from exc
    try:
        yield con
    except sqlite3.Error as exc:
        raise BundleError(f"{gpkg}: not a readable GeoPackage ({exc}); copy the bundle again "
                          "or run the analysis again") from exc
    finally:
        con.close()


def _columns(con: sqlite3.Connection, gpkg: Path, table: str) -> list[tuple[str, str, bool]]:
    """(name, declared type upper-case, primary key) of each column of `table`."""
    if not table.replace("_", "").isalnum():
        raise BundleError(f"{table!r}: not a table name")
    info = con.execute(f'PRAGMA table_info("{table}")').fetchall()
    if not info:
        raise BundleError(f"{gpkg}: no table {table!r}")
    return [(str(row[1]), str(row[2]).upper(), bool(row[5])) for row in info]


def primary_key(path: str | Path, table: str = "patches") -> str | None:
    """Name of the table's single-column primary key (a GeoPackage's fid), else None."""
    with open_gpkg(path) as con:
        pk = [name for name, _, is_pk in _columns(con, gpkg_path(path), table) if is_pk]
    return pk[0] if len(pk) == 1 else None


def read_table(path: str | Path, table: str, columns: Sequence[str] | None = None, *,
               missing_ok: bool = False) -> dict[str, np.ndarray]:
    """Columns of a GeoPackage table as numpy arrays (NULL -> NaN for numbers, None for text).

    `path` is a bundle (see `gpkg_path`) or a .gpkg file. `columns` None: every attribute
    (not the geometry, not the fid); with `missing_ok`, asked columns the table does not
    have are left out instead of refused. Rows are ordered by `patch_id` for the patches
    layer, by the first column otherwise.
    """
    gpkg = gpkg_path(path)
    with open_gpkg(gpkg) as con:
        types = {name: typ for name, typ, _ in _columns(con, gpkg, table)}
        wanted = list(columns) if columns is not None else [
            c for c in types if c not in ("geom", "geometry", "fid")]
        unknown = [c for c in wanted if c not in types]
        if unknown and missing_ok:
            wanted = [c for c in wanted if c in types]
        elif unknown:
            raise BundleError(f"{gpkg}: table {table!r} has no column(s) {unknown}")
        if not wanted:
            return {}
        order = "patch_id" if "patch_id" in types else wanted[0]
        cols = ", ".join(f'"{c}"' for c in wanted)
        # Identifiers only (checked against PRAGMA table_info above), no values: read-only db.
        sql = f'SELECT {cols} FROM "{table}" ORDER BY "{order}"'  # noqa: S608  # nosec B608
        rows = con.execute(sql).fetchall()
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(wanted):
        values = [r[j] for r in rows]
        t = types[name]
        if t.startswith(("INT", "MEDIUMINT", "SMALLINT", "TINYINT", "BOOLEAN")):
            if any(v is None for v in values):
                out[name] = np.array([np.nan if v is None else v for v in values], float)
            else:
                out[name] = np.array(values, dtype=np.int64)
        elif t.startswith(("REAL", "FLOAT", "DOUBLE")):
            out[name] = np.array([np.nan if v is None else v for v in values], dtype=float)
        else:
            out[name] = np.array(values, dtype=object)
    return out


class Bundle:
    """A complete bundle opened read-only: manifest, per-patch columns, arrays on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_bundle_path(path)
        self.manifest = read_manifest(self.path)
        self._patches: dict[str, np.ndarray] | None = None

    @property
    def kind(self) -> str:
        """"analysis" or "estimate"."""
        return str(self.manifest.get("kind", "analysis"))

    @property
    def gpkg(self) -> Path:
        """Path of the GeoPackage."""
        return self.path / GPKG

    @property
    def patches(self) -> dict[str, np.ndarray]:
        """All attributes of the patches layer, ordered by patch_id."""
        if self._patches is None:
            self._patches = read_table(self.path, "patches")
        return self._patches

    def __len__(self) -> int:
        return int(self.manifest.get("n_patches", len(self.patches.get("patch_id", []))))

    def array(self, name: str) -> np.ndarray:
        """`arrays/NAME.npy`."""
        return load_array(self.path, name)

    def has_array(self, name: str) -> bool:
        """Whether the bundle holds `arrays/NAME.npy`."""
        return has_array(self.path, name)

    def clusters(self) -> dict[str, np.ndarray]:
        """The clusters table."""
        return read_table(self.path, "clusters")

    def raster(self, image: str, kind: str) -> Path | None:
        """Path of an image's raster ("prediction", "confusion", "est_iou"), if written."""
        for im in self.manifest.get("images", []):
            if im.get("name") == image and im.get(kind):
                p = Path(im[kind])
                return p if p.is_absolute() else self.path / p
        return None

    def heatmap(self) -> tuple[np.ndarray, list[float]] | None:
        """(grid, [xmin, xmax, ymin, ymax]) of the estimated-IoU heatmap, if present."""
        hm = self.manifest.get("heatmap")
        if not hm or not self.has_array("heatmap"):
            return None
        return self.array("heatmap"), [float(v) for v in hm["extent"]]
