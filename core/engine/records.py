"""What the engine records per patch and per image: the contract between engine and analytics.

A `PatchTable` is columnar (one numpy array per attribute, one row per patch) so that
70,000 patches cost a few arrays, not 70,000 objects.

numpy and the standard library only: the QGIS plugin imports the IoU conventions from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: IoU conventions for patches where label and prediction are both empty (IoU = 0/0),
#: and what each means, in the words every front end shows.
IOU_CONVENTION_TEXT = {
    "zero": "both-empty patches count as IoU 0, a failure, as in the source paper",
    "one": "both-empty patches count as IoU 1, correct",
    "exclude": "both-empty patches have no IoU and are left out of IoU figures",
}
IOU_CONVENTIONS = tuple(IOU_CONVENTION_TEXT)
#: The question an IoU convention answers (a label for the choice).
IOU_CONVENTION_QUESTION = "IoU when label and prediction are both empty"

#: Per-patch numeric columns the engine fills (NaN where undefined or unlabelled; see
#: `metrics`): scores, uncertainty, expected and confident errors, pixel counts.
METRIC_COLUMNS = (
    "iou", "accuracy", "precision", "recall", "label_frac", "pred_frac",
    "entropy", "confidence", "uncertain_frac", "soft_fp_frac", "soft_fn_frac",
    "conf_fp_frac", "conf_fn_frac", "tp", "fp", "fn", "tn", "logit_hist",
)
#: Columns with several values per patch (N, B) and their dtype; the others are float64.
ARRAY_COLUMNS = {"logit_hist": np.int32}
#: Per-patch columns that describe where the patch is.
LOCATION_COLUMNS = ("patch_id", "image", "region", "split", "row_off", "col_off",
                    "height", "width")
#: Uncertainty features (available only when the decoder ran).
UNCERTAINTY_COLUMNS = ("entropy", "confidence", "uncertain_frac")


def describe_convention(convention: str) -> str:
    """`convention` and what it means, e.g. "zero (both-empty patches count as IoU 0, ...)"."""
    text = IOU_CONVENTION_TEXT.get(convention)
    return f"{convention} ({text})" if text else str(convention)


@dataclass
class ImageRecord:
    """One analysed image and the rasters written for it."""

    name: str                      # file stem, unique within a run ("austin1")
    path: str                      # absolute path of the image
    label: str | None              # absolute path of the label (raster or vector) or None
    region: str
    split: str                     # "train", "val" or "new"
    crs_wkt: str
    transform: tuple[float, ...]   # affine a, b, c, d, e, f (GDAL order: rasterio's Affine[:6])
    width: int
    height: int
    prediction: str | None = None  # path of the stitched prediction GeoTIFF (uint8 0/1, 255 nodata)
    confusion: str | None = None   # confusion GeoTIFF: 0 TN, 1 TP, 2 FP, 3 FN, 255 nodata
    counts: dict[str, int] = field(default_factory=dict)  # tn, tp, fp, fn over the stitched image

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form."""
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ImageRecord:
        """Inverse of `to_dict`."""
        d = dict(d)
        d["transform"] = tuple(d["transform"])
        return cls(**d)


@dataclass
class PatchTable:
    """Columns (N rows), embeddings (N x D float32), footprints and thumbnails."""

    columns: dict[str, np.ndarray]
    embeddings: np.ndarray
    footprints: list[Any]                       # shapely Polygons in `crs_wkt`
    crs_wkt: str
    images: list[ImageRecord]
    iou_convention: str = "zero"
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)
    # "image": (N, T, T, 3) uint8, "label": (N, T, T) uint8 0/1, "pred": (N, T, T) uint8 0/1

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def has_labels(self) -> bool:
        """True when at least one patch has a defined IoU or label fraction."""
        lf = self.columns.get("label_frac")
        return lf is not None and bool(np.isfinite(lf).any())

    def subset(self, mask: np.ndarray) -> PatchTable:
        """Rows where `mask` is true (a boolean array of length N)."""
        idx = np.flatnonzero(mask)
        return PatchTable(
            columns={k: v[idx] for k, v in self.columns.items()},
            embeddings=self.embeddings[idx],
            footprints=[self.footprints[i] for i in idx],
            crs_wkt=self.crs_wkt,
            images=self.images,
            iou_convention=self.iou_convention,
            thumbnails={k: v[idx] for k, v in self.thumbnails.items()},
        )

    @staticmethod
    def concat(tables: list[PatchTable]) -> PatchTable:
        """Rows of several tables (same CRS, same columns), patch ids renumbered."""
        if not tables:
            raise ValueError("no patch tables to concatenate")
        first = tables[0]
        cols = {k: np.concatenate([t.columns[k] for t in tables]) for k in first.columns}
        cols["patch_id"] = np.arange(sum(len(t) for t in tables), dtype=np.int64)
        images: list[ImageRecord] = []
        seen: set[str] = set()
        for t in tables:
            for im in t.images:
                if im.name not in seen:
                    seen.add(im.name)
                    images.append(im)
        return PatchTable(
            columns=cols,
            embeddings=np.concatenate([t.embeddings for t in tables]),
            footprints=[f for t in tables for f in t.footprints],
            crs_wkt=first.crs_wkt,
            images=images,
            iou_convention=first.iou_convention,
            thumbnails={k: np.concatenate([t.thumbnails[k] for t in tables])
                        for k in first.thumbnails},
        )
