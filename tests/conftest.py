"""Session fixtures shared by the core and the plugin tests.

`tiny_run` builds, once, a small real run through the command line exactly as a user
(or the QGIS plugin) would: sample data -> a tiny trained U-Net -> `analyze` ->
`estimate`. It runs in a subprocess of the worker environment, so the plugin tests
never load torch into the QGIS process. Results are cached under `.test-cache/`, keyed
by the sources of core/, so the core and plugin test runs share one build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# pytest-qgis starts a QgsApplication before any test: without a display it needs this.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".test-cache"


@dataclass(frozen=True)
class TinyRun:
    """Paths of the tiny end-to-end run."""

    data: Path          # sample data root (train/, new/)
    model: Path         # smp save_pretrained folder
    bundle: Path        # analysis bundle of data/train
    estimate: Path      # estimate bundle of data/new against `bundle`


def _source_key() -> str:
    h = hashlib.sha256()
    for f in sorted((ROOT / "core").rglob("*.py")):
        h.update(f.relative_to(ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def segexplain(*args: str | Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the command line in the worker environment; raises with its output on failure."""
    cmd = [sys.executable, "-m", "segexplain.core.cli", *map(str, args)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n"
                             f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


def build_tiny_run(where: Path) -> TinyRun:
    """Sample data -> tiny model -> analyze -> estimate, in `where`."""
    run = TinyRun(where / "data", where / "model", where / "train.segx", where / "new.segx")
    segexplain("sample-data", run.data, "--small", "--progress", "none")
    segexplain("train", "--data", run.data / "train", "--out", run.model,
               "--preset", "tiny", "--progress", "none")
    # 64 px patches: the small sample's 256 px tiles give enough patches (160) for the
    # grouped cross-validation and the cluster sweep.
    segexplain("analyze", "--data", run.data / "train", "--model", run.model,
               "--out", run.bundle, "--patch-size", "64", "--progress", "none")
    segexplain("estimate", "--data", run.data / "new", "--reference", run.bundle,
               "--model", run.model, "--out", run.estimate, "--progress", "none")
    return run


@pytest.fixture(scope="session")
def tiny_run() -> TinyRun:
    """A small real end-to-end run, built once per source version."""
    where = CACHE / f"tiny-run-{_source_key()}"
    done = where / "COMPLETE"
    if not done.exists():
        # stale builds of older sources, or this one half-built
        for old in CACHE.glob("tiny-run-*"):
            shutil.rmtree(old, ignore_errors=True)
        where.mkdir(parents=True)
        build_tiny_run(where)
        done.write_text("ok\n")
    return TinyRun(where / "data", where / "model", where / "train.segx", where / "new.segx")


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run: TinyRun) -> Path:
    """Path of a small real analysis bundle (read-only: copy it before changing it)."""
    return tiny_run.bundle


@pytest.fixture(scope="session")
def tiny_estimate_bundle(tiny_run: TinyRun) -> Path:
    """Path of a small real estimate bundle of the held-out region."""
    return tiny_run.estimate
