"""Turn what the user picked in QGIS (layers, files, a folder, a model) into CLI arguments.

The core command line takes `--data` (one image, or a folder: Inria layout or pairs)
and `--labels`. Several separate image files are staged as a folder of links
(`<stem>.tif` + `<stem>_label.<ext>`, the "folder of pairs" layout of core/data/datasets.py);
the core resolves links, so the bundle records the real files. A vector layer that is
not a plain single-layer file (a memory layer, a filtered layer, one layer of a
GeoPackage) is exported to a GeoPackage in the staging folder first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsMapLayer,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from ..core.errors import InputError

BUNDLE_SUFFIX = ".segx"
MODEL_KINDS = ("folder", "checkpoint", "onnx")
ARCHS = ("unet", "unetplusplus", "fpn", "linknet", "pspnet", "deeplabv3plus", "manet")


@dataclass
class DataArgs:
    """`--data/--labels` arguments and the staging folder to remove after the run."""

    args: list[str]
    staging: Path | None = None
    notes: list[str] = field(default_factory=list)


def new_staging() -> Path:
    """Return a fresh staging folder (removed by the algorithm when the run ends)."""
    return Path(tempfile.mkdtemp(prefix="segexplain-inputs-"))


def layer_path(layer: QgsMapLayer) -> Path:
    """Return the file behind a raster or vector layer, or raise InputError."""
    if layer is None or not layer.isValid():
        raise InputError("no valid layer selected; pick a layer or choose files instead")
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path") or ""
    if not path or not Path(path).is_file():
        raise InputError(f"layer {layer.name()!r} ({layer.providerType()}) is not a file on "
                         "disk; save it as a GeoTIFF / GeoPackage first, or choose files")
    return Path(path)


def raster_layer_file(layer: QgsRasterLayer) -> Path:
    """Return the GeoTIFF (or other GDAL file) of a raster layer."""
    if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        name = layer.name() if layer is not None else None
        raise InputError(f"layer {name!r} is not a GDAL raster file; export it with "
                         "Raster ▸ Conversion ▸ Translate and pick the file")
    return layer_path(layer)


def vector_layer_file(layer: QgsVectorLayer, staging: Path) -> Path:
    """Return a file the core can read for a vector layer (exported when needed)."""
    if not isinstance(layer, QgsVectorLayer) or not layer.isValid():
        raise InputError("no valid vector layer selected for the labels")
    if layer.providerType() == "ogr" and not layer.subsetString():
        parts = QgsProviderRegistry.instance().decodeUri("ogr", layer.source())
        path = Path(parts.get("path") or "")
        single = not parts.get("layerName") and parts.get("layerId") in (None, "", 0)
        if path.is_file() and (single or path.suffix.lower() in (".geojson", ".shp")):
            return path
    staging.mkdir(parents=True, exist_ok=True)
    out = staging / f"{_safe(layer.name()) or 'labels'}_export.gpkg"
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.layerName = "labels"
    res = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(out), QgsCoordinateTransformContext(), opts) \
        if hasattr(QgsVectorFileWriter, "writeAsVectorFormatV3") else \
        QgsVectorFileWriter.writeAsVectorFormatV2(
            layer, str(out), QgsCoordinateTransformContext(), opts)
    if res[0] != QgsVectorFileWriter.WriterError.NoError:
        raise InputError(f"could not export layer {layer.name()!r} to {out} ({res[1]}); "
                         "save it as a GeoPackage and pick the file")
    return out


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name).strip("_")


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:  # Windows without symlink rights: hard link, else copy
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def _match_labels(images: list[Path], labels: list[Path]) -> list[Path | None]:
    """Label per image: one shared label, a stem match, else the order given."""
    if not labels:
        return [None] * len(images)
    if len(labels) == 1:
        return [labels[0]] * len(images)
    by_stem: dict[str, Path] = {}
    for lab in labels:
        stem = lab.stem
        for suffix in ("_label", "_labels", "_mask", "_gt"):
            stem = stem.removesuffix(suffix)
        by_stem[stem] = lab
    if len(labels) != len(images):
        raise InputError(f"{len(images)} images but {len(labels)} label files; give one "
                         "label file per image (same order or same file name), or one "
                         "vector layer for all")
    if all(im.stem in by_stem for im in images):
        return [by_stem[im.stem] for im in images]
    return list(labels)


def stage_pairs(images: list[Path], labels: list[Path], staging: Path) -> Path:
    """Link images (and labels) into `staging/pairs` in the folder-of-pairs layout."""
    folder = staging / "pairs"
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    for image, label in zip(images, _match_labels(images, labels), strict=True):
        stem = image.stem
        n = 2
        while stem.lower() in used:
            stem, n = f"{image.stem}_{n}", n + 1
        used.add(stem.lower())
        _link(image.resolve(), folder / f"{stem}{image.suffix.lower()}")
        if label is not None:
            _link(label.resolve(), folder / f"{stem}_label{label.suffix.lower()}")
    return folder


def data_args(*, images: list[Path] | None = None, folder: Path | None = None,
              labels: list[Path] | None = None, staging: Path | None = None) -> DataArgs:
    """Return `--data` / `--labels` for a folder, one image or several images."""
    labels = [Path(p) for p in (labels or [])]
    for p in labels:
        if not p.exists():
            raise InputError(f"label {p}: no such file or folder; check the path")
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"imagery folder {folder}: not a folder; pick the folder that "
                             "holds images/ (+ gt/ or labels/) or the image files")
        if len(labels) > 1:
            raise InputError("with an imagery folder, give one label folder (or none: "
                             "labels found in gt/, labels/ or as <stem>_label.*)")
        return DataArgs(["--data", str(folder), *(["--labels", str(labels[0])]
                                                    if labels else [])])
    images = [Path(p) for p in (images or [])]
    if not images:
        raise InputError("no imagery given; pick a raster layer, image files or a folder")
    for p in images:
        if not p.is_file():
            raise InputError(f"image {p}: no such file; check the path")
    if len(images) == 1 and len(labels) <= 1:
        return DataArgs(["--data", str(images[0]), *(["--labels", str(labels[0])]
                                                     if labels else [])])
    staging = staging or new_staging()
    pairs = stage_pairs(images, labels, staging)
    return DataArgs(["--data", str(pairs)], staging,
                    [f"{len(images)} images staged as links in {pairs}"])


def model_args(kind: str, path: str | Path, *, arch: str = "unet",
               encoder: str = "resnet34") -> list[str]:
    """Return `--model` (plus architecture or back end) for a model folder, checkpoint or ONNX."""
    p = Path(path) if path else None
    if kind not in MODEL_KINDS:
        raise InputError(f"model kind {kind!r}: expected one of {MODEL_KINDS}")
    if p is None or not p.exists():
        raise InputError(f"model {path or '(none)'}: no such file or folder; pick the model "
                         "folder (segexplain train / smp save_pretrained), a checkpoint or "
                         "an ONNX file")
    if kind == "folder":
        if not p.is_dir():
            raise InputError(f"model {p}: expected a folder with config.json and weights; "
                             "for a single file choose 'checkpoint' or 'ONNX'")
        return ["--model", str(p)]
    if not p.is_file():
        raise InputError(f"model {p}: expected a file for kind {kind!r}")
    if kind == "onnx":
        return ["--model", str(p), "--backend", "onnx"]
    args = ["--model", str(p)]
    if (arch, encoder) != ("unet", "resnet34"):  # the core's defaults for checkpoints
        args += ["--arch", arch, "--encoder", encoder]
    return args


def bundle_out(folder: str | Path, name: str) -> Path:
    """Return the bundle path `folder/NAME.segx`, or raise InputError."""
    name = name.strip()
    if not name or any(ch in name for ch in "/\\:*?\"<>|"):
        raise InputError(f"bundle name {name!r}: expected a plain name like austin.segx")
    if not str(folder).strip():
        raise InputError("no output folder chosen; pick where the bundle goes")
    parent = Path(folder)
    if not parent.is_dir():
        raise InputError(f"output folder {parent}: no such folder; create it or pick another")
    if not name.endswith(BUNDLE_SUFFIX):
        name += BUNDLE_SUFFIX
    return parent / name
