"""Command-line glue of a scaled run: --workers / --scheduler / --resume for analyze and estimate.

`scaled_run(args, progress)` gives a `TiledRun` (the engine pass tile by tile through an
executor and a work folder, `tiles.run_tiles`) when one of the options is given, else None
(one process, no work folder).
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from ..engine.records import PatchTable
from ..engine.settings import EngineSettings
from ..errors import ConfigurationError
from ..progress import Progress
from .executors import DaskExecutor, InProcessExecutor, make_executor
from .tiles import publish_rasters, remember_model, run_tiles

if TYPE_CHECKING:
    from ..data.datasets import ImagePair
    from ..model.models import LoadedModel
    from ..model.spec import OnnxModel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --workers, --scheduler and --resume to a command's argparse parser."""
    g = parser.add_argument_group("scale out (default: one process, no work folder)")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="run tiles on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run tiles on an existing Dask cluster")
    g.add_argument("--resume", action="store_true",
                   help="keep finished tiles of an interrupted run (NAME.segx.work/)")


def work_dir_for(out: str | os.PathLike[str]) -> Path:
    """Name the work folder of bundle `out`: NAME.segx.work/ next to it."""
    p = Path(out)
    return p.with_name(f"{p.name}.work")


class TiledRun:
    """A run whose engine pass goes tile by tile through an executor and a work folder."""

    def __init__(self, out: str | os.PathLike[str], executor: InProcessExecutor | DaskExecutor,
                 resume: bool, progress: Progress) -> None:
        self.work_dir = work_dir_for(out)
        self.executor = executor
        self.resume = resume
        self.progress = progress

    def analyze(self, pairs: Sequence[ImagePair], model: LoadedModel | OnnxModel,
                settings: EngineSettings, raster_dir: Path) -> PatchTable:
        """`engine.analyze_images` over tiles; the rasters end up in `raster_dir`."""
        if model.path is None:
            raise ConfigurationError("a tiled run needs a model saved on disk (a folder or "
                                     "checkpoint path every worker can read)")
        remember_model(model)
        try:
            table = run_tiles(pairs, model.path, settings, executor=self.executor,
                              work_dir=self.work_dir, resume=self.resume,
                              progress=self.progress, model_sha256=model.sha256)
        finally:
            self.executor.close()  # free the workers before the analytics start
        publish_rasters(table, raster_dir)
        return table


class scaled_run:  # noqa: N801 - used like a function: `with scaled_run(args, p) as run`
    """Context: a `TiledRun` when --workers/--scheduler/--resume is given, else None.

    The work folder is removed when the block succeeds and kept when it fails (a killed
    run leaves it too), so the same command with --resume continues.
    """

    def __init__(self, args: argparse.Namespace, progress: Progress) -> None:
        self.args = args
        self.progress = progress
        self.run: TiledRun | None = None

    def __enter__(self) -> TiledRun | None:
        a = self.args
        workers, scheduler = getattr(a, "workers", None), getattr(a, "scheduler", None)
        resume = bool(getattr(a, "resume", False))
        if workers is None and scheduler is None and not resume:
            return None
        executor = make_executor(workers, scheduler)
        work = work_dir_for(a.out)
        if work.exists() and not resume:
            shutil.rmtree(work)  # a fresh run: tiles of an older run are not reused
        if isinstance(executor, DaskExecutor):
            self.progress.stage("start cluster", 0)
            executor.start()
            self.progress.log(f"tiles run on {executor.describe()}")
        self.run = TiledRun(a.out, executor, resume, self.progress)
        return self.run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.run is None:
            return
        self.run.executor.close()
        if exc_type is None:
            shutil.rmtree(self.run.work_dir, ignore_errors=True)
        elif self.run.work_dir.exists():
            self.progress.log(f"finished tiles kept in {self.run.work_dir}: run the same "
                              "command with --resume to continue", level="warning")
