"""`segexplain check-env`: what this Python can run, and exactly what to install if not.

It must work in a Python that lacks torch or anything else the worker needs: every
package is imported inside a guard, and the report says which commands are available,
what the environment is (`ROLES`: a full worker; a field worker that estimates new
regions from an ONNX model without torch; or incomplete) and the pip command that
completes it (the lock files when found next to the package, else the pins below).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
from pathlib import Path
from typing import Any

from ..progress import Progress
from .env_report import ROLES, format_report

HELP = "report the Python, the worker packages and the device; say what to install"

#: (import name, pip name, what it is needed for)
PACKAGES: tuple[tuple[str, str, str], ...] = (
    ("numpy", "numpy", "everything"),
    ("rasterio", "rasterio", "reading imagery and writing rasters"),
    ("shapely", "shapely", "patch footprints"),
    ("osgeo.ogr", "GDAL Python bindings", "vector labels and the bundle GeoPackage"),
    ("torch", "torch", "training and the U-Net on CUDA or CPU"),
    ("torchvision", "torchvision", "segmentation-models-pytorch"),
    ("segmentation_models_pytorch", "segmentation-models-pytorch", "loading the U-Net"),
    ("safetensors", "safetensors", "model weights"),
    ("onnxruntime", "onnxruntime", "fast CPU inference and field-laptop estimates"),
    ("sklearn", "scikit-learn", "PCA, IoU estimators and clustering (analyze)"),
)

#: What each command needs (import names; `a|b`: either). An ONNX model runs on
#: onnxruntime alone, a model folder or checkpoint on torch + smp.
NEEDS: dict[str, tuple[str, ...]] = {
    "info": ("numpy",),
    "export-tasks": ("numpy", "osgeo.ogr"),
    "estimate": ("numpy", "rasterio", "shapely", "osgeo.ogr",
                 "onnxruntime|segmentation_models_pytorch"),
    "analyze": ("numpy", "rasterio", "shapely", "osgeo.ogr", "sklearn",
                "onnxruntime|segmentation_models_pytorch"),
    "train": ("numpy", "rasterio", "shapely", "torch", "segmentation_models_pytorch"),
}

#: Oldest version of a package the core works with (older counts as missing).
MIN_VERSIONS = {"shapely": (2, 0), "rasterio": (1, 3), "numpy": (1, 23)}

#: Pins used when requirements.txt is not next to the package (kept in step with it).
FALLBACK_PINS = {
    "numpy": "numpy==1.26.4", "rasterio": "rasterio==1.4.4", "shapely": "shapely==2.2.0",
    "torch": "torch==2.14.1", "torchvision": "torchvision==0.29.1",
    "segmentation-models-pytorch": "segmentation-models-pytorch==0.6.0",
    "safetensors": "safetensors==0.8.0", "onnxruntime": "onnxruntime==1.31.1",
    "scikit-learn": "scikit-learn==1.9.1",
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object on stdout instead of a table")


def _probe(module: str) -> dict[str, Any]:
    """Import `module` and report its version, or the one-line reason it failed."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        return {"ok": False, "version": None, "error": f"{type(exc).__name__}: {exc}"}
    if module == "osgeo.ogr":
        osgeo = importlib.import_module("osgeo")
        version = getattr(osgeo, "__version__", None)
    else:
        version = getattr(mod, "__version__", None)
    text = str(version) if version else "unknown"
    oldest = MIN_VERSIONS.get(module)
    if oldest and _version_tuple(text) < oldest:
        want = ".".join(map(str, oldest))
        return {"ok": False, "version": text, "error": f"version {text} is too old, need >= {want}"}
    return {"ok": True, "version": text, "error": None}


def _version_tuple(text: str) -> tuple[int, ...]:
    """(major, minor) of a version string; (0,) when it cannot be read."""
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or (0,)


def _ready(found: dict[str, dict[str, Any]], needs: tuple[str, ...]) -> bool:
    """Whether every need (a module, or `a|b` for either) is importable."""
    return all(any(found[m]["ok"] for m in need.split("|")) for need in needs)


def _device(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Describe the device the engine will use, in words, plus the CUDA facts."""
    ort = found["onnxruntime"]["ok"]
    if found["torch"]["ok"]:
        import torch

        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            return {"cuda": True, "name": name, "count": torch.cuda.device_count(),
                    "cuda_version": torch.version.cuda,
                    "summary": f"GPU: {name} (CUDA {torch.version.cuda})"}
    summary = ("no GPU: CPU with onnxruntime" if ort else
               "no GPU: CPU with torch (install onnxruntime for faster CPU inference)"
               if found["torch"]["ok"] else "no GPU and no inference back end")
    return {"cuda": False, "name": None, "count": 0, "cuda_version": None, "summary": summary}


def read_pins(root: Path) -> dict[str, str]:
    """Read the requirement lines of `root/requirements.txt` by lower-case project name."""
    pins = dict(FALLBACK_PINS)
    req = root / "requirements.txt"
    if not req.is_file():
        return pins
    for raw in req.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = line
        for sep in ("==", ">=", "<=", "~=", "<", ">", "[", ";"):
            name = name.split(sep, 1)[0]
        pins[name.strip().lower()] = line
    return pins


def _role(found: dict[str, dict[str, Any]], commands: dict[str, bool]) -> str:
    """Full worker (every command), field worker (estimate from ONNX) or incomplete."""
    if all(commands.values()):
        return ROLES[0]
    if commands["estimate"] and found["onnxruntime"]["ok"] and not found["torch"]["ok"]:
        return ROLES[1]
    return ROLES[2]


def _install_lines(root: Path, python: str, role: str, pip_args: list[str]) -> list[str]:
    """The commands that complete the environment (a field worker: to a full one)."""
    lines = [f"{python} -m pip install " + " ".join(f'"{a}"' for a in pip_args)]
    lock = root / "requirements.lock"
    if lock.is_file():
        lines.append(f"or the whole locked worker: {python} -m pip install "
                     f"--require-hashes -r {lock}")
    elif (root / "requirements.txt").is_file():
        lines.append(f"or everything at once: {python} -m pip install -r "
                     f"{root / 'requirements.txt'}"
                     + (f" -c {root / 'constraints.txt'}"
                        if (root / "constraints.txt").is_file() else ""))
    field = root / "requirements-field.lock"
    if role == ROLES[2] and field.is_file():
        lines.append(f"or only the field worker (estimate from an ONNX model, no torch): "
                     f"{python} -m pip install --require-hashes -r {field}")
    return lines


def report(root: Path | None = None) -> dict[str, Any]:
    """Build the environment report as a plain JSON-able dict."""
    root = root if root is not None else Path(__file__).resolve().parents[2]
    found = {module: _probe(module) for module, _, _ in PACKAGES}
    pins = read_pins(root)
    missing = [(module, pip_name, why) for module, pip_name, why in PACKAGES
               if not found[module]["ok"]]
    pip_args = [pins.get(pip_name.lower(), pip_name) for module, pip_name, _ in missing
                if module != "osgeo.ogr"]
    python = sys.executable or "python3"
    commands = {cmd: _ready(found, needs) for cmd, needs in NEEDS.items()}
    role = _role(found, commands)
    install = _install_lines(root, python, role, pip_args) if pip_args else []
    if not found["osgeo.ogr"]["ok"]:
        install.append("GDAL Python bindings: on Debian/Ubuntu `apt-get install python3-gdal` "
                       "and create the venv with --system-site-packages; elsewhere use the "
                       "Python of a GDAL install (OSGeo4W, conda-forge gdal)")
    numpy_major = (found["numpy"]["version"] or "0").split(".", 1)[0]
    warnings = []
    if numpy_major.isdigit() and int(numpy_major) >= 2 and sys.prefix != sys.base_prefix:
        warnings.append("numpy >= 2 in a virtual environment can shadow the system numpy and "
                        "break GDAL/scipy built for numpy 1: pip install \"numpy<2\"")
    return {
        "python": {"executable": python, "version": platform.python_version(),
                   "implementation": platform.python_implementation(),
                   "platform": platform.platform(), "virtualenv": sys.prefix != sys.base_prefix},
        "segexplain": {"path": str(root)},
        "packages": {module: {"pip": pip_name, "needed_for": why, **found[module]}
                     for module, pip_name, why in PACKAGES},
        "device": _device(found),
        "commands": commands,
        "role": role,
        "missing": [pip_name for _, pip_name, _ in missing],
        "install": install,
        "warnings": warnings,
        "ok": role != ROLES[2] and not warnings
              and (role == ROLES[1] or not missing),
    }


def run(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    """Print the report (JSON or a table) and return it."""
    rep = report()
    if getattr(args, "json", False):
        if progress.mode != "jsonl":  # jsonl already carries it in the done event
            sys.stdout.write(json.dumps(rep) + "\n")
    elif progress.mode != "jsonl":
        sys.stdout.write(format_report(rep) + "\n")
    sys.stdout.flush()
    return rep
