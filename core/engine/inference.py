"""The inference engine: patches in, a PatchTable and stitched rasters out.

`analyze_images` runs one forward pass per batch that yields per-pixel building
probabilities, the binary mask and the pooled bottleneck vector (see `models.ExplainNet`),
scores every patch (`metrics.patch_metrics`), writes thumbnails and stitches the
probabilities into full-image prediction / confusion GeoTIFFs (`stitch.StripStitcher`).

Streaming: per image, raster windows are read by `readers` threads (rasterio releases
the GIL while decoding) a bounded number of batches ahead of the model, so reading
overlaps inference and memory does not grow with the raster: the engine holds at most
`prefetch` batches of patches, the stitcher one strip of `patch_size` rows, and the
table one row, one embedding and three thumbnails per patch. `iter_batches` hands the
results on batch by batch for callers that want to consume them as they come.

Encoder-only mode (imagery without labels, or when only embeddings are needed) skips
the decoder: the uncertainty and prediction columns are NaN and no rasters are written.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import (
    ConfigurationError,
    EmptyInputError,
    InputError,
    ModelLoadError,
    NoValidPatchError,
)
from ..model.backends import Backend, make_backend
from ..model.spec import POOLINGS, OnnxModel, is_onnx, load_onnx_model
from ..progress import NULL_PROGRESS, Progress
from .metrics import THRESHOLD, patch_metrics
from .records import ARRAY_COLUMNS, METRIC_COLUMNS, ImageRecord, PatchTable
from .settings import EngineSettings
from .stitch import StripStitcher, window_bounds

if TYPE_CHECKING:
    from pyproj import Transformer
    from rasterio.crs import CRS
    from shapely.geometry import Polygon
    from torch import nn

    from ..data.datasets import ImagePair
    from ..data.imagery import ImageSource, Patch
    from ..data.windows import PatchWindow
    from ..model.models import LoadedModel

#: GDAL block cache (bytes) set for the process by `analyze_images`.
GDAL_CACHE_BYTES = 128 * 2**20


@dataclass
class BatchResult:
    """What one forward pass produced for a batch of patches of one image."""

    image_index: int                 # index into the run's list of ImageRecords
    windows: list[PatchWindow]
    images: np.ndarray               # (B, C, S, S) float32 in [0, 1]
    labels: np.ndarray | None        # (B, S, S) uint8 0/1
    valid: np.ndarray                # (B, S, S) bool
    prob: np.ndarray | None          # (B, S, S) float32 (None in encoder-only mode)
    embeddings: np.ndarray           # (B, D) float32
    metrics: dict[str, np.ndarray]   # METRIC_COLUMNS (+ tp/fp/fn/tn with labels)


@dataclass
class _Image:
    pair: ImagePair
    source: ImageSource
    windows: list[PatchWindow]
    record: ImageRecord


def image_record(src: ImageSource) -> ImageRecord:
    """Describe an opened image as an `ImageRecord` (absolute path, no rasters yet)."""
    return ImageRecord(
        name=src.name, path=str(Path(src.path).resolve()),
        label=str(src.pair.label) if src.pair.label is not None else None,
        region=src.region, split=src.split, crs_wkt=src.crs.to_wkt(),
        transform=tuple(src.transform)[:6], width=src.width, height=src.height)


def check_patch_size(patch_size: int, stride: int | None,
                     model: LoadedModel | OnnxModel) -> int:
    """Validate patch size and stride; returns the stride (default: the patch size)."""
    os_ = model.output_stride
    if patch_size <= 0 or patch_size % os_:
        lo = max(os_, patch_size // os_ * os_)
        raise ConfigurationError(
            f"patch size {patch_size} px is not a multiple of the encoder's output stride "
            f"{os_} ({model.encoder}); use e.g. --patch-size {lo} or {lo + os_}")
    stride = patch_size if stride is None else int(stride)
    if stride <= 0 or stride > patch_size:
        raise ConfigurationError(
            f"stride {stride} px: expected 1 to the patch size {patch_size} px")
    return stride


def _thumb_index(size: int, thumb: int) -> np.ndarray:
    return ((np.arange(thumb) + 0.5) * size / thumb).astype(np.intp).clip(0, size - 1)


def thumbnails(images: np.ndarray, labels: np.ndarray | None, prob: np.ndarray | None,
               valid: np.ndarray, thumb_size: int) -> dict[str, np.ndarray]:
    """Nearest-neighbour thumbnails: image (B, T, T, 3) uint8, label/pred (B, T, T) 0/1."""
    idx = _thumb_index(images.shape[-1], thumb_size)
    v = valid[:, idx][:, :, idx]
    rgb = images[:, :3] if images.shape[1] >= 3 else np.repeat(images[:, :1], 3, axis=1)
    rgb = rgb[:, :, idx][:, :, :, idx]
    img = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    img[~v] = 0
    out = {"image": np.ascontiguousarray(img)}
    if labels is not None:
        out["label"] = (labels[:, idx][:, :, idx] > 0).astype(np.uint8) * v
    if prob is not None:
        out["pred"] = (prob[:, idx][:, :, idx] >= THRESHOLD).astype(np.uint8) * v
    return out


def _check_bands(pair: ImagePair, model: LoadedModel | OnnxModel,
                 bands: Sequence[int] | None) -> None:
    """Refuse a model with more channels than the image has bands, saying what to do."""
    import rasterio

    if bands is not None:
        return
    try:
        with rasterio.open(pair.image) as ds:
            count = int(ds.count)
    except Exception:  # noqa: BLE001 - open_source reports unreadable files precisely
        return
    if 1 < count < model.in_channels:
        raise ConfigurationError(
            f"{pair.image} has {count} bands but the model takes {model.in_channels} "
            f"channels: pass --bands to choose {model.in_channels} bands, or use a "
            f"{count}-channel model")


def _open_images(pairs: Sequence[ImagePair], model: LoadedModel | OnnxModel, patch_size: int,
                 stride: int, min_valid: float, bands: Sequence[int] | None,
                 progress: Progress) -> list[_Image]:
    from ..data.imagery import open_source

    opened: list[_Image] = []
    names: set[str] = set()
    try:
        for pair in pairs:
            name = str(pair.name)
            if name in names:
                raise InputError(
                    f"two images are named {name!r}: image names must be unique within a run")
            names.add(name)
            _check_bands(pair, model, bands)
            src = open_source(pair, channels=model.in_channels, bands=bands, warn=progress)
            wins = sorted(src.windows(patch_size, stride, min_valid),
                          key=lambda w: (int(w.row_off), int(w.col_off)))
            if not wins:
                progress.log(f"{pair.image}: no patch has {min_valid:.0%} valid pixels; "
                             "image skipped", level="warning")
                src.close()
                continue
            opened.append(_Image(pair, src, wins, image_record(src)))
    except BaseException:
        for im in opened:
            im.source.close()
        raise
    if not opened:
        listed = ", ".join(str(p.image) for p in list(pairs)[:3])
        raise NoValidPatchError(
            f"no patch of {listed} has at least {min_valid:.0%} valid pixels (all nodata?): "
            "check the imagery or lower --min-valid")
    return opened


def _read_batches(img: _Image, batch_size: int, readers: int,
                  prefetch: int) -> Iterator[tuple[list[PatchWindow], list[Patch]]]:
    """(windows, patches) per batch, read by a thread pool at most `prefetch` batches ahead."""
    wins = img.windows
    with ThreadPoolExecutor(max_workers=max(1, readers),
                            thread_name_prefix="segexplain-read") as pool:
        pending: deque[Future[Patch]] = deque()
        nxt = 0
        limit = batch_size * max(1, prefetch)
        for start in range(0, len(wins), batch_size):
            stop = min(start + batch_size, len(wins))
            while nxt < len(wins) and len(pending) < limit + (stop - start):
                pending.append(pool.submit(img.source.read, wins[nxt]))
                nxt += 1
            patches = [pending.popleft().result() for _ in range(stop - start)]
            yield wins[start:stop], patches


def iter_batches(images: list[_Image], backend: Backend, *, batch_size: int,
                 iou_convention: str, encoder_only: bool, readers: int = 2,
                 prefetch: int = 2) -> Iterator[BatchResult]:
    """Read, infer and score batch after batch (images in order, windows row by row)."""
    for i, img in enumerate(images):
        for wins, patches in _read_batches(img, batch_size, readers, prefetch):
            x = np.stack([p.image for p in patches]).astype(np.float32, copy=False)
            valid = np.stack([np.asarray(p.valid, dtype=bool) for p in patches])
            if not np.isfinite(x).all():  # defensive: nodata must never reach the model
                x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
                valid &= np.isfinite(np.stack([p.image for p in patches])).all(axis=1)
            labels = None
            if patches[0].label is not None:
                labels = np.stack([np.asarray(p.label, dtype=np.uint8) for p in patches])
            prob, emb = backend.run(x)
            if prob is None:  # encoder only: label statistics without a prediction
                m = patch_metrics(np.zeros(valid.shape, np.float32), labels, valid,
                                  iou_convention, with_uncertainty=False)
                for k in ("iou", "accuracy", "precision", "recall", "pred_frac", "tp", "fp",
                          "fn", "tn"):
                    m[k] = np.full(len(patches), np.nan)
            else:
                m = patch_metrics(prob, labels, valid, iou_convention)
            yield BatchResult(i, wins, x, labels, valid, prob, emb, m)


def analyze_images(pairs: Sequence[ImagePair],
                   model: LoadedModel | OnnxModel | nn.Module | str | Path,
                   settings: EngineSettings | None = None, *, raster_dir: Path | None = None,
                   progress: Progress = NULL_PROGRESS,
                   backend: Backend | None = None) -> PatchTable:
    """Analyse image/label pairs with `model`; see the module doc.

    `model` is a `LoadedModel`, an `OnnxModel` (no torch needed), a model folder /
    checkpoint / ``.onnx`` path or an smp module.
    `settings` (default: `EngineSettings()`) holds the patch grid, scoring and back end.
    `backend`, when given, is a back end built by `backends.make_backend` for this model
    and reused across calls (`settings.backend` is then not looked at).
    `raster_dir` receives <image>_pred.tif and, for labelled images, <image>_confusion.tif
    (not in encoder-only mode). Patches are ordered image by image, row by row.
    """
    cfg = settings if settings is not None else EngineSettings()
    if cfg.pooling not in POOLINGS:
        raise ConfigurationError(
            f"pooling {cfg.pooling!r} is unknown: expected one of {POOLINGS}")
    if not pairs:
        raise EmptyInputError("no images to analyse: pass at least one image")
    lm = _as_model(model)
    if lm.classes != 1:
        raise ModelLoadError(
            f"model has {lm.classes} output classes: expected 1 (binary building mask)")
    stride = check_patch_size(cfg.patch_size, cfg.stride, lm)
    import rasterio

    # GDAL's block cache defaults to 5% of RAM and fills with every block a run reads
    # (the validity scan of a 20000 px image alone) and writes; cap it for the process.
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        images = _open_images(pairs, lm, cfg.patch_size, stride, cfg.min_valid, cfg.bands,
                              progress)
    try:
        return _analyze(images, lm, cfg, backend, raster_dir, progress)
    finally:
        for im in images:
            im.source.close()


def _as_model(model: LoadedModel | OnnxModel | nn.Module | str | Path
              ) -> LoadedModel | OnnxModel:
    """An `OnnxModel` as it is (or opened from an .onnx path), else a `LoadedModel`."""
    if isinstance(model, OnnxModel):
        return model
    if isinstance(model, (str, Path)) and is_onnx(model):
        return load_onnx_model(model)
    from ..model.models import as_loaded  # torch

    return as_loaded(model)


def _analyze(images: list[_Image], lm: LoadedModel | OnnxModel, cfg: EngineSettings,
             backend: Backend | None, raster_dir: Path | None,
             progress: Progress) -> PatchTable:
    patch_size, thumb_size = cfg.patch_size, cfg.thumb_size
    if backend is None:
        be = make_backend(lm, cfg.backend, patch_size=patch_size, pooling=cfg.pooling,
                          encoder_only=cfg.encoder_only, threads=cfg.threads,
                          progress=progress)
    else:  # a back end built once by the caller and reused across runs
        be = backend
        if be.encoder_only != cfg.encoder_only:
            raise ConfigurationError(
                f"the given back end is {'encoder-only' if be.encoder_only else 'full'} but "
                f"encoder_only={cfg.encoder_only} was asked; build it with the same setting")
    bs = int(cfg.batch_size or be.suggest_batch_size(lm.in_channels, patch_size))
    readers = cfg.readers
    if readers is None:  # a GPU eats patches faster than two threads decode them
        readers = min(8, os.cpu_count() or 2) if be.device.type == "cuda" else 2
    if bs < 1:
        raise ConfigurationError(f"batch size {cfg.batch_size}: expected at least 1")

    from ..data.windows import window_footprint

    total = sum(len(im.windows) for im in images)
    progress.stage("infer", total)
    stitchers: dict[int, StripStitcher] = {}
    cols: dict[str, list[np.ndarray]] = {k: [] for k in METRIC_COLUMNS}
    loc: dict[str, list[str | int]] = {k: [] for k in ("image", "region", "split", "row_off",
                                                 "col_off", "height", "width")}
    embs: list[np.ndarray] = []
    thumbs: dict[str, list[np.ndarray]] = {}
    footprints: list[Polygon] = []
    crs0 = images[0].source.crs
    reprojectors: dict[int, Transformer] = {}
    try:
        for res in iter_batches(images, be, batch_size=bs, iou_convention=cfg.iou_convention,
                                encoder_only=cfg.encoder_only, readers=readers):
            img = images[res.image_index]
            if raster_dir is not None and res.prob is not None:
                st = stitchers.get(res.image_index)
                if st is None:
                    for j in [j for j in stitchers if j != res.image_index]:
                        _finish(images[j].record, stitchers.pop(j))
                    st = stitchers[res.image_index] = _stitcher(img, patch_size, raster_dir)
                for i, w in enumerate(res.windows):
                    st.add(w, res.prob[i], res.valid[i],
                           res.labels[i] if res.labels is not None else None)
            for k in METRIC_COLUMNS:
                dtype = ARRAY_COLUMNS.get(k, np.float64)
                cols[k].append(np.asarray(res.metrics[k], dtype=dtype))
            for w in res.windows:
                r0, c0, h, wd = window_bounds(w)
                loc["image"].append(img.record.name)
                loc["region"].append(img.record.region)
                loc["split"].append(img.record.split)
                loc["row_off"].append(r0)
                loc["col_off"].append(c0)
                loc["height"].append(h)
                loc["width"].append(wd)
                fp = window_footprint(img.source.transform, w)
                footprints.append(_reproject(fp, img, crs0, reprojectors, res.image_index))
            embs.append(np.asarray(res.embeddings, dtype=np.float32))
            batch_thumbs = thumbnails(res.images, res.labels, res.prob, res.valid, thumb_size)
            # label thumbnails stay aligned with the patches: zeros for unlabelled images
            batch_thumbs.setdefault("label", np.zeros((len(res.windows), thumb_size,
                                                       thumb_size), np.uint8))
            for key, arr in batch_thumbs.items():
                thumbs.setdefault(key, []).append(arr)
            progress.advance(len(res.windows))
        for j in list(stitchers):
            _finish(images[j].record, stitchers.pop(j))
    finally:
        for st in stitchers.values():
            st.abort()

    n = sum(len(e) for e in embs)
    columns: dict[str, np.ndarray] = {"patch_id": np.arange(n, dtype=np.int64)}
    for k in ("image", "region", "split"):
        columns[k] = np.asarray(loc[k], dtype=str)
    for k in ("row_off", "col_off", "height", "width"):
        columns[k] = np.asarray(loc[k], dtype=np.int64)
    for k in METRIC_COLUMNS:
        columns[k] = np.concatenate(cols[k])
    thumb_arrays = _merge_thumbs(thumbs, images)
    return PatchTable(
        columns=columns, embeddings=np.concatenate(embs).astype(np.float32, copy=False),
        footprints=footprints, crs_wkt=images[0].record.crs_wkt,
        images=[im.record for im in images], iou_convention=cfg.iou_convention,
        thumbnails=thumb_arrays)


def _merge_thumbs(thumbs: dict[str, list[np.ndarray]], images: list[_Image]
                  ) -> dict[str, np.ndarray]:
    out = {key: np.concatenate(parts) for key, parts in thumbs.items()}
    if all(im.pair.label is None for im in images):
        out.pop("label", None)  # no ground truth anywhere: no label thumbnails
    return out


def _stitcher(img: _Image, patch_size: int, raster_dir: Path) -> StripStitcher:
    rd = Path(raster_dir)
    rd.mkdir(parents=True, exist_ok=True)
    name = img.record.name
    has_label = img.pair.label is not None
    return StripStitcher(
        width=img.record.width, height=img.record.height, crs=img.source.crs,
        transform=img.source.transform, patch_size=patch_size,
        pred_path=rd / f"{name}_pred.tif",
        confusion_path=rd / f"{name}_confusion.tif" if has_label else None)


def _finish(rec: ImageRecord, st: StripStitcher) -> None:
    counts = st.close()
    rec.prediction = str(st.pred_path)
    if st.confusion_path is not None:
        rec.confusion = str(st.confusion_path)
        rec.counts = dict(counts)


def _reproject(geom: Polygon, img: _Image, crs0: CRS | None, cache: dict[int, Transformer],
               idx: int) -> Polygon:
    """Footprint in the run's CRS (the first image's); identity when they agree."""
    crs = img.source.crs
    if crs0 is None or crs is None or crs == crs0:
        return geom
    if idx not in cache:
        from pyproj import Transformer

        cache[idx] = Transformer.from_crs(crs.to_wkt(), crs0.to_wkt(), always_xy=True)
    from shapely.ops import transform

    return transform(cache[idx].transform, geom)
