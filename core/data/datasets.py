"""Find image / label pairs on disk: one file, a folder of pairs, or the Inria layout.

Layouts understood by `discover(path, labels=None)`:

a. one image file, with `labels` (a raster or vector file) or a sibling `<stem>_label.*`;
b. a folder of pairs: `<stem>.tif` next to `<stem>_label.tif|.gpkg|.geojson|.shp`, or
   `images/<stem>.tif` with `labels/<stem>.*` (or `labels/<stem>_label.*`);
c. the Inria Aerial Image Labeling layout: `images/<city><n>.tif` + `gt/<city><n>.tif`
   (gt 0/255). Region = stem without trailing digits (`austin12` -> `austin`).

Split: with tile numbers (Inria layout, or when `val_tiles` is given) tiles 1-5 of each
region are "val" and the others "train"; `val_tiles` or a `dataset.json` in the folder
(`{"val_tiles": [1]}`) overrides the tile numbers, `{"split": "new"}` puts every tile in
one split. Other folders are "train". Pairs without a label get split "new".
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import (
    ConfigurationError,
    EmptyInputError,
    InputError,
    MissingLabelError,
    UnreadableFileError,
)

IMAGE_EXTS = (".tif", ".tiff", ".jp2", ".img", ".vrt")
RASTER_LABEL_EXTS = (".tif", ".tiff", ".png", ".img", ".vrt")
VECTOR_LABEL_EXTS = (".gpkg", ".geojson", ".json", ".shp")
LABEL_EXTS = (".tif", ".tiff", ".gpkg", ".geojson", ".json", ".shp", ".png", ".img", ".vrt")
LABEL_SUFFIXES = ("_label", "_labels", "_mask", "_gt")
#: Inria's standard validation tiles: 1-5 of each city.
INRIA_VAL_TILES = (1, 2, 3, 4, 5)
SPLITS = ("train", "val", "new")

_TRAILING_DIGITS = re.compile(r"^(.*?)[_\-]?(\d+)$")


@dataclass(frozen=True)
class ImagePair:
    """One image, its label (raster or vector) or None, and where it belongs."""

    image: Path
    label: Path | None
    region: str
    split: str
    name: str


def region_and_tile(stem: str) -> tuple[str, int | None]:
    """`austin12` -> ("austin", 12); `scene` -> ("scene", None)."""
    match = _TRAILING_DIGITS.match(stem)
    if match and match.group(1):
        return match.group(1), int(match.group(2))
    return stem, None


def is_vector(path: Path) -> bool:
    """Tell whether a label file is read as vector footprints."""
    return path.suffix.lower() in VECTOR_LABEL_EXTS


def _is_image(path: Path) -> bool:
    return (path.is_file() and path.suffix.lower() in IMAGE_EXTS
            and not path.name.startswith(".")
            and not any(path.stem.lower().endswith(s) for s in LABEL_SUFFIXES)
            and not path.name.endswith(".part"))


def _find_label(folder: Path, stem: str, suffixes: Iterable[str]) -> Path | None:
    for suffix in suffixes:
        for ext in LABEL_EXTS:
            cand = folder / f"{stem}{suffix}{ext}"
            if cand.is_file():
                return cand
    return None


def _read_meta(folder: Path) -> dict[str, Any]:
    path = folder / "dataset.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UnreadableFileError(
            f"{path}: not valid JSON ({exc}); fix it or remove it") from exc
    if not isinstance(meta, dict):
        raise ConfigurationError(f"{path}: expected a JSON object like {{\"val_tiles\": [1]}}")
    if not isinstance(meta.get("regions", {}), dict):
        raise ConfigurationError(
            f"{path}: regions {meta['regions']!r}: expected an object like "
            f"{{\"scene7\": \"coast\"}} (image stem -> region)")
    if "split" in meta and meta["split"] not in SPLITS:
        raise ConfigurationError(
            f"{path}: split {meta['split']!r} is not one of {SPLITS}")
    return meta


def _val_set(val_tiles: Iterable[int] | None, meta: dict[str, Any],
             inria: bool) -> set[int] | None:
    if val_tiles is not None:
        return {int(t) for t in val_tiles}
    if "val_tiles" in meta:
        try:
            return {int(t) for t in meta["val_tiles"]}
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(
                f"dataset.json val_tiles {meta['val_tiles']!r}: expected a list of tile "
                f"numbers like [1, 2]") from exc
    return set(INRIA_VAL_TILES) if inria else None


def _pair(image: Path, label: Path | None, *, val: set[int] | None,
          meta: dict[str, Any], require_labels: bool) -> ImagePair:
    region, tile = region_and_tile(image.stem)
    region = str(meta.get("regions", {}).get(image.stem, region))
    if label is None:
        if require_labels:
            raise MissingLabelError(
                f"{image}: no label found (looked for {image.stem}_label.tif/.gpkg/.geojson/"
                f".shp, labels/ and gt/ folders); pass the label file or run without labels")
        split = "new"
    elif "split" in meta:
        split = str(meta["split"])
    elif val is not None and tile is not None:
        split = "val" if tile in val else "train"
    else:
        split = "train"
    return ImagePair(image=image.resolve(), label=label.resolve() if label else None,
                     region=region, split=split, name=image.stem)


def discover(path: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None, *,
             require_labels: bool = True,
             val_tiles: Iterable[int] | None = None) -> list[ImagePair]:
    """Image / label pairs under `path` (see the module docstring for the layouts)."""
    root = Path(path)
    if not root.exists():
        raise UnreadableFileError(f"{root}: no such file or folder; check the path")
    if root.is_file():
        return [_single(root, labels, require_labels=require_labels, val_tiles=val_tiles)]
    meta = _read_meta(root)
    label_root = Path(labels) if labels is not None else None
    if label_root is not None and not label_root.is_dir():
        raise ConfigurationError(
            f"labels {label_root}: expected a folder of labels when the images are a folder")
    if (root / "images").is_dir():
        images = sorted(p for p in (root / "images").iterdir() if _is_image(p))
        gt = root / "gt"
        inria = gt.is_dir() and label_root is None
        if label_root is None:
            label_root = gt if gt.is_dir() else root / "labels"
        suffixes: tuple[str, ...] = ("", *LABEL_SUFFIXES)
    else:
        images = sorted(p for p in root.iterdir() if _is_image(p))
        inria = False
        suffixes = LABEL_SUFFIXES if label_root is None else ("", *LABEL_SUFFIXES)
        label_root = label_root or root
    if not images:
        raise EmptyInputError(
            f"{root}: no images found (expected *.tif files, or images/ with gt/ or "
            f"labels/); point to a folder of GeoTIFFs")
    val = _val_set(val_tiles, meta, inria)
    pairs = []
    for image in images:
        label = _find_label(label_root, image.stem, suffixes) if label_root.is_dir() else None
        pairs.append(_pair(image, label, val=val, meta=meta, require_labels=require_labels))
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise InputError(
            f"{root}: image names {dup} appear more than once (e.g. a.tif and a.tiff); "
            f"rename them so that every stem is unique")
    return pairs


def _single(image: Path, labels: str | os.PathLike[str] | None, *, require_labels: bool,
            val_tiles: Iterable[int] | None) -> ImagePair:
    if image.suffix.lower() not in IMAGE_EXTS:
        raise UnreadableFileError(
            f"{image}: not an image file (expected one of {', '.join(IMAGE_EXTS)})")
    label: Path | None
    if labels is not None:
        label = Path(labels)
        if not label.is_file():
            raise UnreadableFileError(f"label {label}: no such file; check the path")
    else:
        label = _find_label(image.parent, image.stem, LABEL_SUFFIXES)
    meta = _read_meta(image.parent)
    val = _val_set(val_tiles, meta, inria=False)
    return _pair(image, label, val=val, meta=meta, require_labels=require_labels)
