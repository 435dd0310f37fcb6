"""Helpers for tests that run the segexplain algorithms the way the dialogs run them."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from qgis.core import QgsApplication, QgsProcessingContext, QgsProject
from segexplain.segexplain_qgis.processing import arguments


def wait_run(run, timeout: float = 600) -> None:
    """Let the task manager run an AlgorithmRun to its end (its handlers have run)."""
    deadline = time.monotonic() + timeout
    while not run.done and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QgsApplication.processEvents()
    assert run.done, f"{run.description} did not end within {timeout} s"


def worker_args(run) -> list[str]:
    """The worker command and arguments the algorithm logged when it was prepared."""
    lines = [ln for ln in run.feedback.textLog().splitlines() if ln.startswith("worker: ")]
    assert len(lines) == 1, run.feedback.textLog()
    words = lines[0].split()
    return words[words.index("segexplain.core.cli") + 1:]


def toolbox_args(alg_id: str, parameters: dict) -> tuple[list[str], Path | None]:
    """The worker arguments the algorithm builds for `parameters` (as the toolbox gives them)."""
    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    call = arguments.worker_call(alg, parameters, context)
    call.remove_staging()
    return call.args, call.staging


def unstaged(args: list[str], staging: Path | None) -> list[str]:
    """`args` with the (per-run) staging folder written as STAGING."""
    return [a.replace(str(staging), "STAGING") if staging else a for a in args]


def staging_of(args: list[str]) -> Path | None:
    """The staging folder in worker arguments (a path under the temporary folder)."""
    tmp = Path(tempfile.gettempdir())
    for a in args:
        p = Path(a)
        if p.is_relative_to(tmp) and p.relative_to(tmp).parts[0].startswith(
                "segexplain-inputs-"):
            return tmp / p.relative_to(tmp).parts[0]
    return None


def stagings() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("segexplain-inputs-*"))


def worker_children() -> list[int]:
    """Processes started by this test run that run the core command line."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            status = (proc / "status").read_text()
            if (f"\nPPid:\t{os.getpid()}\n" in status
                    and b"segexplain.core.cli" in (proc / "cmdline").read_bytes()):
                found.append(int(proc.name))
        except OSError:
            continue
    return found
