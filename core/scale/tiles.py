"""The per-tile unit of work: analyse one image, persist its PatchTable, resume a run.

A tile is one image of the data set (an Inria tile is 5000 x 5000 px). `run_tile`
analyses one image with `engine.analyze_images` (the model is loaded once per process
and cached by path and file state) and persists the tile's `PatchTable` to
`WORK/tiles/<name>.npz`; `run_tiles` maps `run_tile` over the images with an executor
(`core.scale.executors`: in-process, a local Dask cluster or an existing one) and concatenates
the tiles in the original order, so its result is the one `analyze_images(pairs, ...)`
gives in one process: same columns and rows, embeddings within floating-point tolerance
(thread counts change summation order), same rasters.

Work directory (`NAME.segx.work/` next to the bundle)::

    tiles/<name>.npz     one finished tile (written under a temporary name, then renamed)
    rasters/<name>_*.tif the tile's prediction / confusion rasters (renamed into place
                         before the tile's .npz is written)
    tmp/                 rasters being written by running tiles

Tile files hold plain arrays only (read with `allow_pickle=False`): columns (strings as
unicode arrays), embeddings, thumbnails, footprints as concatenated WKB bytes (uint8)
with offsets, and a JSON document (crs, IoU convention, ImageRecord, resume key). A tile
whose resume key (image file, label, model sha256, the engine settings that shape a
result: `EngineSettings.result_key`) matches is not computed again by a resumed run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.records import ImageRecord, PatchTable
from ..engine.settings import EngineSettings
from ..errors import (
    BundleError,
    ConfigurationError,
    EmptyInputError,
    InputError,
    NoValidPatchError,
)
from ..progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from ..data.datasets import ImagePair
    from ..model.models import LoadedModel
    from ..model.spec import OnnxModel
    from .executors import DaskExecutor, InProcessExecutor

#: Version of the tile file layout; a resumed run recomputes tiles of another version.
TILE_FORMAT = 1

#: A model file's state: (name, size, mtime) of each of its files.
FileState = tuple[tuple[str, int, int], ...]

_MODELS: dict[tuple[str, FileState], LoadedModel | OnnxModel] = {}


# -- model cache ---------------------------------------------------------------------

def _file_state(path: Path) -> FileState:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files
                 if "onnx-cache" not in p.parts)


def cached_model(model_path: str | Path) -> LoadedModel | OnnxModel:
    """Load the model at `model_path` once per process (cached by path and file state)."""
    from ..model.loading import load_any  # an ONNX file needs no torch

    p = Path(model_path).resolve()
    key = (str(p), _file_state(p))
    if key not in _MODELS:
        _MODELS.clear()  # one model per worker process at a time
        _MODELS[key] = load_any(p)
    return _MODELS[key]


# -- tile files ----------------------------------------------------------------------

def tile_key(pair: ImagePair, model_sha256: str, settings: EngineSettings) -> str:
    """Resume key of one tile: image and label files, model and result-shaping settings."""
    def state(p: Path | None) -> list[Any] | None:
        if p is None:
            return None
        q = Path(p).resolve()
        st = q.stat() if q.exists() else None
        return [str(q), st.st_size if st else None, st.st_mtime_ns if st else None]

    doc = {"format": TILE_FORMAT, "image": state(pair.image), "label": state(pair.label),
           "region": pair.region, "split": pair.split, "name": pair.name,
           "model": model_sha256,
           "engine": settings.result_key()}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def tile_path(work_dir: Path, name: str) -> Path:
    """Where the tile of image `name` is persisted."""
    return Path(work_dir) / "tiles" / f"{name}.npz"


def save_tile(path: Path, table: PatchTable | None, key: str) -> None:
    """Persist one tile's table (None: an image without any valid patch) atomically."""
    meta: dict[str, Any] = {"format": TILE_FORMAT, "key": key, "n": 0}
    arrays: dict[str, np.ndarray] = {}
    if table is not None:
        wkb = [bytes(g.wkb) for g in table.footprints]
        offsets = np.zeros(len(wkb) + 1, np.int64)
        offsets[1:] = np.cumsum([len(b) for b in wkb])
        arrays["footprints_wkb"] = np.frombuffer(b"".join(wkb), np.uint8)
        arrays["footprints_offsets"] = offsets
        arrays["embeddings"] = np.asarray(table.embeddings)
        for k, v in table.columns.items():
            arrays[f"col__{k}"] = np.asarray(v)
        for k, v in table.thumbnails.items():
            arrays[f"thumb__{k}"] = np.asarray(v)
        images = []
        for im in table.images:
            d = im.to_dict()
            for f in ("prediction", "confusion"):  # stored by name: the work dir may move
                d[f] = Path(d[f]).name if d[f] else None
            images.append(d)
        meta.update(n=len(table), crs_wkt=table.crs_wkt, iou_convention=table.iou_convention,
                    columns=list(table.columns), thumbnails=list(table.thumbnails),
                    images=images)
    arrays["meta_json"] = np.frombuffer(json.dumps(meta).encode("utf-8"), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_tile_meta(path: Path) -> dict[str, Any]:
    """Read the JSON document of a tile file."""
    with np.load(path, allow_pickle=False) as z:
        return dict(json.loads(z["meta_json"].tobytes().decode("utf-8")))


def load_tile(path: Path) -> PatchTable | None:
    """Read a tile written by `save_tile` (None for an image without valid patches)."""
    from shapely import from_wkb

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta_json"].tobytes().decode("utf-8"))
            if int(meta.get("n", 0)) == 0 and "images" not in meta:
                return None
            raw, off = z["footprints_wkb"].tobytes(), z["footprints_offsets"]
            footprints = [from_wkb(raw[off[i]:off[i + 1]]) for i in range(len(off) - 1)]
            columns = {k: z[f"col__{k}"] for k in meta["columns"]}
            thumbs = {k: z[f"thumb__{k}"] for k in meta["thumbnails"]}
            embeddings = z["embeddings"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{path}: not a readable tile file ({exc}); delete it and run "
                          "again with --resume to recompute that tile") from None
    rasters = Path(path).parent.parent / "rasters"
    images = []
    for d in meta["images"]:
        for f in ("prediction", "confusion"):
            d[f] = str(rasters / d[f]) if d[f] else None
        images.append(ImageRecord.from_dict(d))
    return PatchTable(columns=columns, embeddings=embeddings, footprints=footprints,
                      crs_wkt=meta["crs_wkt"], images=images,
                      iou_convention=meta["iou_convention"], thumbnails=thumbs)


def tile_done(path: Path, key: str) -> bool:
    """Tell whether `path` is a finished tile of this key with all its rasters present."""
    if not path.is_file():
        return False
    try:
        meta = read_tile_meta(path)
    except (OSError, ValueError, KeyError):
        return False
    if meta.get("key") != key or meta.get("format") != TILE_FORMAT:
        return False
    rasters = path.parent.parent / "rasters"
    return all((rasters / d[f]).is_file() for d in meta.get("images", [])
               for f in ("prediction", "confusion") if d.get(f))


# -- one tile ------------------------------------------------------------------------

def run_tile(pair: ImagePair, model_path: str | Path, settings: EngineSettings,
             work_dir: str | Path, *, resume_key: str | None = None,
             model_sha256: str | None = None) -> dict[str, Any]:
    """Analyse one image and persist its table; returns a small summary (path, counts).

    Rasters are written under `work_dir/tmp/` and renamed into `work_dir/rasters/` before
    the tile file appears, so a tile file always has complete rasters (a killed attempt
    leaves only a stray tmp folder).
    """
    from ..engine.inference import analyze_images

    start = time.perf_counter()
    model = cached_model(model_path)
    if model_sha256 and model.sha256 and model.sha256 != model_sha256:
        raise ConfigurationError(
            f"model {model_path} on this worker has sha256 {model.sha256[:12]}, the run "
            f"expects {model_sha256[:12]}: give every worker the same model file")
    work = Path(work_dir)
    run_settings = settings
    if settings.threads is None and os.environ.get("SEGEXPLAIN_THREADS"):
        run_settings = replace(settings, threads=int(os.environ["SEGEXPLAIN_THREADS"]))
    tmp = work / "tmp" / f"{pair.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        try:
            table: PatchTable | None = analyze_images([pair], model, run_settings,
                                                      raster_dir=tmp)
        except NoValidPatchError:
            table = None  # no valid patch in this image: the engine skips it too
        rasters = work / "rasters"
        rasters.mkdir(parents=True, exist_ok=True)
        for im in table.images if table is not None else []:
            for f in ("prediction", "confusion"):
                src = getattr(im, f)
                if src:
                    dst = rasters / Path(src).name
                    os.replace(src, dst)
                    setattr(im, f, str(dst))
        path = tile_path(work, pair.name)
        save_tile(path, table, resume_key or tile_key(pair, model.sha256, settings))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"name": str(pair.name), "path": str(path),
            "patches": len(table) if table is not None else 0,
            "seconds": time.perf_counter() - start, "pid": os.getpid()}


# -- all tiles -----------------------------------------------------------------------

def _same_crs(a: str, b: str) -> bool:
    if a == b:
        return True
    from rasterio.crs import CRS

    return bool(CRS.from_wkt(a) == CRS.from_wkt(b))


def _harmonise(tables: list[PatchTable], thumb_size: int) -> list[PatchTable]:
    """Footprints in the first tile's CRS, the same thumbnail keys in every tile."""
    import shapely
    from pyproj import Transformer

    crs0 = tables[0].crs_wkt
    keys = sorted({k for t in tables for k in t.thumbnails})
    for t in tables:
        if not _same_crs(t.crs_wkt, crs0):
            tr = Transformer.from_crs(t.crs_wkt, crs0, always_xy=True)
            moved = shapely.transform(np.asarray(t.footprints, dtype=object), tr.transform,
                                      interleaved=False)
            t.footprints = list(moved)
            t.crs_wkt = crs0
        for k in keys:  # an unlabelled image among labelled ones: zeros (label_frac NaN)
            if k not in t.thumbnails:
                t.thumbnails[k] = np.zeros((len(t), thumb_size, thumb_size), np.uint8)
    return tables


def run_tiles(pairs: Sequence[ImagePair], model_path: str | Path, settings: EngineSettings,
              *, executor: InProcessExecutor | DaskExecutor | None = None,
              work_dir: str | Path, resume: bool = False, progress: Progress = NULL_PROGRESS,
              model_sha256: str | None = None) -> PatchTable:
    """Analyse `pairs` tile by tile on `executor`; the table `analyze_images` would give.

    `executor` is a `core.scale.executors` executor (default: in-process). With `resume`,
    tiles already persisted in `work_dir` with the same key are read back instead of
    computed. Rasters stay in `work_dir/rasters` (see `publish_rasters`).
    """
    from .executors import InProcessExecutor

    if not pairs:
        raise EmptyInputError("no images to analyse: pass at least one image")
    names = [str(p.name) for p in pairs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(
            f"two images are named {dup[0]!r}: image names must be unique within a run")
    work = Path(work_dir)
    (work / "tiles").mkdir(parents=True, exist_ok=True)
    if model_sha256 is None:
        model_sha256 = cached_model(model_path).sha256
    executor = executor or InProcessExecutor()
    run_settings = settings
    if settings.threads is None and executor.threads:
        run_settings = replace(settings, threads=executor.threads)
    keys = [tile_key(p, model_sha256, settings) for p in pairs]
    paths = [tile_path(work, n) for n in names]
    todo = [i for i in range(len(pairs)) if not (resume and tile_done(paths[i], keys[i]))]
    skipped = len(pairs) - len(todo)
    progress.stage("infer", len(pairs))
    if resume:
        progress.log(f"resume: {skipped} of {len(pairs)} tile(s) already done in {work}")
    if skipped:
        progress.advance(skipped)
    computed = 0
    calls = [((pairs[i], str(model_path), run_settings, str(work)),
              {"resume_key": keys[i], "model_sha256": model_sha256}) for i in todo]
    for j, result in executor.map_unordered(run_tile, calls, names=[names[i] for i in todo]):
        computed += 1
        if not result.get("patches"):
            progress.log(f"{pairs[todo[j]].image}: no patch has enough valid pixels; image "
                         "skipped", level="warning")
        progress.advance()
    progress.log(f"{computed} tile(s) computed, {skipped} resumed, on {executor.describe()}")
    tables = [t for t in (load_tile(p) for p in paths) if t is not None]
    if not tables:
        listed = ", ".join(str(p.image) for p in list(pairs)[:3])
        raise NoValidPatchError(
            f"no patch of {listed} has enough valid pixels (all nodata?): check the imagery "
            "or lower --min-valid")
    out = PatchTable.concat(_harmonise(tables, settings.thumb_size))
    out.embeddings = out.embeddings.astype(np.float32, copy=False)
    return out


def publish_rasters(table: PatchTable, raster_dir: str | Path) -> None:
    """Link (or copy) the table's rasters into `raster_dir` and point its records there."""
    dest = Path(raster_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for im in table.images:
        for f in ("prediction", "confusion"):
            src = getattr(im, f)
            if not src:
                continue
            dst = dest / Path(src).name
            if dst.exists():
                dst.unlink()
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
            setattr(im, f, str(dst))


def remember_model(model: LoadedModel | OnnxModel) -> None:
    """Seed this process's model cache with an already loaded model."""
    if model.path is not None:
        p = Path(model.path).resolve()
        _MODELS.clear()
        _MODELS[(str(p), _file_state(p))] = model
