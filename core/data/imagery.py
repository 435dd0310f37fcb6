"""Read an image (and its label) patch by patch, normalised to float32 in [0, 1].

`open_source(pair)` checks the image and its label once (CRS, grid, label values, bands,
nodata) and chooses the normalisation once per image: uint8 is divided by 255; other
types get a per-band 2-98 percentile stretch computed from a decimated read. `read(win)`
returns a `Patch`; several threads may call it at once (one rasterio handle per thread).
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from ..errors import ConfigurationError, EmptyInputError, MissingCRSError, UnreadableFileError
from ..progress import Progress
from .datasets import ImagePair
from .labels import Grid, RasterLabel, VectorLabel, open_label
from .windows import PatchWindow, patch_windows

#: Longest side of the decimated read used for statistics and the nodata map.
STATS_SIDE = 1024
#: Percentiles of the stretch applied to non-uint8 imagery.
STRETCH = (2.0, 98.0)

Warn = Callable[[str], Any] | Progress | None


@dataclass
class Patch:
    """One patch: image float32 (C, S, S), label uint8 (S, S) 0/1 or None, valid bool (S, S)."""

    window: PatchWindow
    image: np.ndarray
    label: np.ndarray | None
    valid: np.ndarray


def _warner(warn: Warn) -> Callable[[str], Any]:
    if isinstance(warn, Progress):
        progress = warn
        return lambda msg: progress.log(msg, "warning")
    if warn is None:
        return lambda msg: warnings.warn(msg, stacklevel=4)
    return warn


def _choose_bands(path: str, count: int, channels: int, bands: Sequence[int] | None,
                  say: Callable[[str], Any]) -> tuple[list[int], bool]:
    """1-based band indexes to read, and whether one band is replicated to `channels`."""
    if channels < 1:
        raise ConfigurationError(f"channels {channels}: expected 1 or more")
    if bands is not None:
        sel = [int(b) for b in bands]
        bad = [b for b in sel if not 1 <= b <= count]
        if bad:
            raise ConfigurationError(
                f"{path}: bands {bad} do not exist (the image has {count} bands, numbered "
                f"1-{count}); pick {channels} of them")
        if len(sel) == 1 and channels > 1:
            say(f"{path}: one band ({sel[0]}) selected; it is repeated to {channels} channels")
            return sel, True
        if len(sel) != channels:
            raise ConfigurationError(
                f"{path}: {len(sel)} bands {sel} selected but the model takes {channels} "
                f"channels; pass exactly {channels} band numbers")
        return sel, False
    if count == channels:
        return list(range(1, count + 1)), False
    if count == 1:
        say(f"{path}: single-band image; its band is repeated to {channels} channels")
        return [1], True
    if count < channels:
        raise ConfigurationError(
            f"{path}: {count} bands but the model takes {channels} channels; use an image "
            f"with {channels} bands or select one band to repeat (bands=[1])")
    say(f"{path}: {count} bands, using bands 1-{channels}; pass bands (--bands) to choose "
        f"others, e.g. RGB of a 4-band RGBI image")
    return list(range(1, channels + 1)), False


class ImageSource:
    """An opened image (+ label): grid attributes, patch windows and thread-safe reads."""

    def __init__(self, pair: ImagePair, *, channels: int = 3, bands: Sequence[int] | None = None,
                 building_value: int | None = None, warn: Warn = None) -> None:
        self.pair = pair
        self.name, self.region, self.split = pair.name, pair.region, pair.split
        self.path = str(pair.image)
        self.channels = channels
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[Any] = []
        try:
            self._open(pair, bands, building_value, _warner(warn))
        except BaseException:
            self.close()
            raise

    def _open(self, pair: ImagePair, bands: Sequence[int] | None, building_value: int | None,
              say: Callable[[str], Any]) -> None:
        self.label: RasterLabel | VectorLabel | None = None
        channels = self.channels
        ds = self._dataset()
        if ds.crs is None:
            raise MissingCRSError(
                f"{self.path}: the image has no CRS; assign one (gdal_edit.py -a_srs EPSG:xxxx) "
                f"so that patches can be placed on the map")
        self.crs = ds.crs
        self.transform = ds.transform
        self.width, self.height, self.count = ds.width, ds.height, ds.count
        self.dtype = str(ds.dtypes[0])
        self.nodata = ds.nodata
        alpha = [i for i, ci in enumerate(ds.colorinterp, 1) if ci == ColorInterp.alpha]
        if bands is None and alpha and alpha[-1] == self.count and self.count > 1:
            # RGBA: the alpha band is a mask (GDAL reads it as one), not a channel
            self.bands, self.replicate = _choose_bands(
                self.path, self.count - 1, channels, None, say)
        else:
            self.bands, self.replicate = _choose_bands(
                self.path, self.count, channels, bands, say)
        flags = [ds.mask_flag_enums[b - 1] for b in self.bands]
        self._masked = any(MaskFlags.all_valid not in f for f in flags)
        self._floating = np.issubdtype(np.dtype(self.dtype), np.floating)
        self._valid_small, self._factor = self._scan(ds)
        if pair.label is not None:
            grid = Grid(self.crs, self.transform, self.width, self.height)
            self.label = open_label(pair.label, grid, building_value)

    # -- handles ---------------------------------------------------------------
    def _dataset(self) -> Any:
        ds = getattr(self._local, "ds", None)
        if ds is None:
            try:
                ds = rasterio.open(self.path)
            except RasterioIOError as exc:
                raise UnreadableFileError(
                    f"{self.path}: not a readable raster image ({exc}); check the file "
                    f"(GeoTIFF expected)") from exc
            with self._lock:
                self._handles.append(ds)
            self._local.ds = ds
        return ds

    def close(self) -> None:
        """Close every handle, the label's too."""
        with self._lock:
            for ds in self._handles:
                ds.close()
            self._handles.clear()
        self._local = threading.local()
        if getattr(self, "label", None) is not None:
            self.label.close()  # type: ignore[union-attr]

    def __enter__(self) -> ImageSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- statistics ------------------------------------------------------------
    def _scan(self, ds: Any) -> tuple[np.ndarray | None, int]:
        """Normalisation and a decimated validity map (None when every pixel is valid)."""
        factor = max(1, int(np.ceil(max(self.width, self.height) / STATS_SIDE)))
        needs_stats = self.dtype != "uint8"
        if not (needs_stats or self._masked):
            self.offset = np.zeros(len(self.bands), np.float32)
            self.scale = np.full(len(self.bands), 1 / 255, np.float32)
            return None, factor
        shape = (len(self.bands), max(1, self.height // factor), max(1, self.width // factor))
        data = ds.read(self.bands, out_shape=shape)
        valid = np.ones(shape[1:], bool)
        if self._masked:
            valid &= (ds.read_masks(self.bands, out_shape=shape) > 0).all(axis=0)
        if self._floating:
            valid &= np.isfinite(data).all(axis=0)
        if not valid.any():
            raise EmptyInputError(
                f"{self.path}: every pixel is nodata (nodata={self.nodata}); check the "
                f"image or its nodata value")
        if needs_stats:
            vals = data[:, valid].astype(np.float64)
            lo, hi = np.percentile(vals, STRETCH, axis=1)
            span = np.where(hi > lo, hi - lo, 1.0)
            self.offset = lo.astype(np.float32)
            self.scale = (1.0 / span).astype(np.float32)
        else:
            self.offset = np.zeros(len(self.bands), np.float32)
            self.scale = np.full(len(self.bands), 1 / 255, np.float32)
        return (None if valid.all() and not self._floating else valid), factor

    # -- windows and reads -------------------------------------------------------
    def windows(self, size: int, stride: int | None = None,
                min_valid: float = 0.5) -> list[PatchWindow]:
        """Patch windows over the image, without those under `min_valid` valid pixels.

        The valid fraction counts the in-image part of a window only, so padded windows
        at the right and bottom edges are kept.
        """
        if not 0.0 <= min_valid <= 1.0:
            raise ConfigurationError(f"min_valid {min_valid}: expected a fraction in [0, 1]")
        wins = patch_windows(self.height, self.width, size, stride)
        small = self._valid_small
        if small is None or min_valid == 0.0:
            return wins
        f = self._factor
        keep = []
        for w in wins:
            r0 = min(w.row_off // f, small.shape[0] - 1)
            c0 = min(w.col_off // f, small.shape[1] - 1)
            r1 = max(r0 + 1, -(-(w.row_off + w.height) // f))
            c1 = max(c0 + 1, -(-(w.col_off + w.width) // f))
            if float(small[r0:r1, c0:c1].mean()) >= min_valid:
                keep.append(w)
        return keep

    def read(self, win: PatchWindow) -> Patch:
        """Read the patch under `win`: padding and nodata are 0 in the image and invalid."""
        ds = self._dataset()
        window = Window(win.col_off, win.row_off, win.width, win.height)
        data = ds.read(self.bands, window=window)
        ok = np.ones(data.shape[1:], bool)
        if self._masked:
            ok &= (ds.read_masks(self.bands, window=window) > 0).all(axis=0)
        img = data.astype(np.float32)
        if self._floating:
            ok &= np.isfinite(img).all(axis=0)
        img -= self.offset[:, None, None]
        img *= self.scale[:, None, None]
        np.clip(img, 0.0, 1.0, out=img)
        img[:, ~ok] = 0.0
        c = self.channels
        image = np.zeros((c, win.size, win.size), np.float32)
        image[:, :win.height, :win.width] = img[0] if self.replicate else img
        valid = np.zeros((win.size, win.size), bool)
        valid[:win.height, :win.width] = ok
        label = None
        if self.label is not None:
            label, label_valid = self.label.read(win)
            if label_valid is not None:
                valid &= label_valid
        return Patch(window=win, image=image, label=label, valid=valid)

    @property
    def has_label(self) -> bool:
        """True when a label was found for the image."""
        return self.label is not None


def open_source(pair: ImagePair, *, channels: int = 3, bands: Sequence[int] | None = None,
                building_value: int | None = None, warn: Warn = None) -> ImageSource:
    """Open and check an image and its label (see `ImageSource`)."""
    return ImageSource(pair, channels=channels, bands=bands, building_value=building_value,
                       warn=warn)
