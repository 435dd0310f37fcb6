"""Stitch patch probabilities into full-image prediction and confusion GeoTIFFs.

Overlapping patches are averaged (sum of probabilities / number of patches per pixel),
then thresholded. The rasters are aligned with the input image (same CRS, transform and
size) and written with a windowed writer, strip by strip:

- patches must arrive sorted by `row_off` (the engine sorts its windows);
- when a patch starting at row r arrives, no later patch can touch rows above r, so
  those rows are final: they are classified and written, and the accumulator slides
  down. The accumulator covers only `patch_size` rows of the image's full width, so
  memory is about 8 bytes x width x patch_size whatever the raster's height (41 MB for
  a 20000 px wide image at 256 px patches); the rasters themselves stream to disk
  (tiled, deflate-compressed GeoTIFF). The engine caps GDAL's block cache during a run
  (`engine.GDAL_CACHE_BYTES`), so written and read blocks do not pile up in memory.

Raster values: prediction 0/1 (255 nodata), confusion 0 TN, 1 TP, 2 FP, 3 FN
(255 nodata: outside every patch, or invalid pixels). Counts of tn/tp/fp/fn over the
stitched image are kept as the strips are written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .metrics import THRESHOLD

if TYPE_CHECKING:
    from affine import Affine
    from rasterio.crs import CRS

    from ..data.windows import PatchWindow

NODATA = 255
TN, TP, FP, FN = 0, 1, 2, 3


def window_bounds(win: PatchWindow) -> tuple[int, int, int, int]:
    """(row_off, col_off, height, width) of a patch window in pixels, as ints."""
    return (int(win.row_off), int(win.col_off), int(win.height), int(win.width))


def confusion_codes(pred: np.ndarray, label: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per-pixel confusion code (uint8): 0 TN, 1 TP, 2 FP, 3 FN, 255 where not valid."""
    p = pred.astype(bool, copy=False)
    t = label.astype(bool, copy=False)
    codes = np.where(p, np.where(t, TP, FP), np.where(t, FN, TN)).astype(np.uint8)
    codes[~valid] = NODATA
    return codes


def _profile(crs: CRS, transform: Affine, width: int, height: int) -> dict[str, Any]:
    block = 256
    tiled = width >= block and height >= block
    prof: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": 1,
        "dtype": "uint8", "nodata": NODATA, "crs": crs, "transform": transform,
        "compress": "deflate",
    }
    if tiled:
        prof.update(tiled=True, blockxsize=block, blockysize=block)
    return prof


class StripStitcher:
    """Accumulates patch probabilities for one image and writes finished strips.

    Use as a context manager: `add()` patches in row order, `close()` (or leaving the
    `with` block) writes the remaining rows. On an exception the half-written rasters
    are removed.
    """

    def __init__(self, *, width: int, height: int, crs: CRS, transform: Affine,
                 patch_size: int, pred_path: Path, confusion_path: Path | None) -> None:
        import rasterio  # I/O at the edge

        self.width, self.height, self.patch_size = int(width), int(height), int(patch_size)
        self.pred_path = Path(pred_path)
        self.confusion_path = Path(confusion_path) if confusion_path is not None else None
        self.counts = {"tn": 0, "tp": 0, "fp": 0, "fn": 0}
        rows = min(self.patch_size, self.height)
        self._sum = np.zeros((rows, self.width), np.float32)
        self._n = np.zeros((rows, self.width), np.uint16)
        self._valid = np.zeros((rows, self.width), bool)
        self._label = np.full((rows, self.width), NODATA, np.uint8)
        self._base = 0          # image row of the accumulator's first row
        self._last_row = 0      # row_off of the last patch added (order check)
        prof = _profile(crs, transform, self.width, self.height)
        self.pred_path.parent.mkdir(parents=True, exist_ok=True)
        self._pred_ds = rasterio.open(self.pred_path, "w", **prof)
        self._conf_ds = None
        if self.confusion_path is not None:
            self._conf_ds = rasterio.open(self.confusion_path, "w", **prof)
        self._closed = False

    # -- accumulate -------------------------------------------------------------------
    def add(self, win: PatchWindow, prob: np.ndarray, valid: np.ndarray,
            label: np.ndarray | None) -> None:
        """Add one patch: `prob` (S, S) float, `valid` (S, S) bool, `label` (S, S) 0/1."""
        r0, c0, h, w = window_bounds(win)
        if r0 < self._last_row:
            raise ValueError(f"patch at row {r0} arrived after row {self._last_row}: "
                             "patches must be added in row order")
        self._last_row = r0
        if r0 > self._base:
            self._flush(min(r0, self.height))
        # clip the window to the image
        rr0, cc0 = max(r0, 0), max(c0, 0)
        rr1, cc1 = min(r0 + h, self.height), min(c0 + w, self.width)
        if rr1 <= rr0 or cc1 <= cc0:
            return
        pr = slice(rr0 - r0, rr1 - r0)
        pc = slice(cc0 - c0, cc1 - c0)
        ar = slice(rr0 - self._base, rr1 - self._base)
        ac = slice(cc0, cc1)
        v = valid[pr, pc]
        self._sum[ar, ac] += np.where(v, prob[pr, pc], 0.0).astype(np.float32, copy=False)
        self._n[ar, ac] += v
        self._valid[ar, ac] |= v
        if label is not None:
            lab = self._label[ar, ac]
            np.copyto(lab, label[pr, pc].astype(np.uint8, copy=False), where=v)

    # -- write ------------------------------------------------------------------------
    def _flush(self, upto: int) -> None:
        """Classify and write image rows [base, upto); slide the accumulator down."""
        while self._base < upto:
            self._flush_rows(min(upto - self._base, self._sum.shape[0]))

    def _flush_rows(self, n: int) -> None:
        from rasterio.windows import Window

        covered = self._n[:n] > 0
        valid = self._valid[:n] & covered
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self._sum[:n] / np.maximum(self._n[:n], 1)
        pred = mean >= THRESHOLD
        out_pred = np.where(valid, pred.astype(np.uint8), np.uint8(NODATA))
        win = Window(0, self._base, self.width, n)
        self._pred_ds.write(out_pred, 1, window=win)
        if self._conf_ds is not None:
            lab = self._label[:n]
            known = valid & (lab != NODATA)
            codes = confusion_codes(pred, lab == 1, known)
            self._conf_ds.write(codes, 1, window=win)
            hist = np.bincount(codes[known].ravel(), minlength=4)
            for key, code in (("tn", TN), ("tp", TP), ("fp", FP), ("fn", FN)):
                self.counts[key] += int(hist[code])
        # slide the remaining rows to the top
        rows = self._sum.shape[0]
        for arr, fill in ((self._sum, 0), (self._n, 0), (self._valid, False),
                          (self._label, NODATA)):
            if n < rows:
                arr[: rows - n] = arr[n:].copy()
            arr[rows - n:] = fill
        self._base += n

    def close(self) -> dict[str, int]:
        """Write the remaining rows, close the files and return the confusion counts."""
        if self._closed:
            return self.counts
        self._flush(self.height)
        self._pred_ds.close()
        if self._conf_ds is not None:
            self._conf_ds.close()
        self._closed = True
        return self.counts

    def abort(self) -> None:
        """Close and delete the half-written rasters."""
        if self._closed:
            return
        self._closed = True
        for ds in (self._pred_ds, self._conf_ds):
            if ds is not None:
                ds.close()
        for path in (self.pred_path, self.confusion_path):
            if path is not None and path.exists():
                os.remove(path)

    def __enter__(self) -> StripStitcher:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
