"""Run the core command line as a child process and follow its JSON-lines progress.

`WorkerRun` is plain Python (no Qt): it starts `PY -m segexplain.core.cli COMMAND ARGS
--progress jsonl` in its own process group, reads stdout / stderr in two reader threads,
turns the protocol of core/progress.py into events, cancels politely then by force
(the whole group, so helper processes go too; `process` has the POSIX and Windows
ways) and removes a half-written bundle
(`NAME.segx.partial-PID`) that a killed worker leaves behind. The Processing algorithms
run it for the toolbox, `qgis_process` and the Analyze / Estimate dialogs. `CoreTask`
wraps it in a QgsTask of its own (the Settings dialog's environment check): the run
happens in QGIS's task manager thread, progress goes to the task manager and to the
dialog through signals, and `finished` (main thread) hands over the result or shows the
explained error in the message bar. The main thread only draws.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..core.errors import CancelledError, WorkerError
from ..core.files import cleanup_partials
from . import process, settings

LOG_TAG = "segexplain"

#: import name -> pip project, for "install X" advice.
PIP_NAMES = {
    "torch": "torch", "torchvision": "torchvision", "sklearn": "scikit-learn",
    "segmentation_models_pytorch": "segmentation-models-pytorch", "timm": "timm",
    "onnxruntime": "onnxruntime", "onnx": "onnx", "rasterio": "rasterio",
    "shapely": "shapely", "numpy": "numpy", "safetensors": "safetensors",
    "scipy": "scipy", "pyproj": "pyproj", "osgeo": "GDAL (python3-gdal)",
}

#: Relative weight of each stage of a run in the overall progress bar.
STAGE_WEIGHTS = {"load model": 3.0, "infer": 70.0, "pca": 3.0, "estimators": 12.0,
                 "clusters": 6.0, "novelty": 2.0, "estimate": 3.0, "write bundle": 3.0}
DEFAULT_WEIGHT = 3.0

_NO_MODULE = re.compile(r"No module named '([A-Za-z0-9_.]+)'")


# -- pure helpers -----------------------------------------------------------------------
def worker_command(python: str, command: str, args: Sequence[str | os.PathLike[str]]
                   ) -> list[str]:
    """Argument list of one run of the core command line with JSON-lines progress."""
    return [python, "-m", "segexplain.core.cli", command, *map(str, args),
            "--progress", "jsonl"]


def parse_line(line: str) -> dict[str, Any]:
    """One stdout line: a protocol event, or plain text as a log event."""
    text = line.rstrip("\r\n")
    if text.startswith("{"):
        try:
            event = json.loads(text)
        except ValueError:
            event = None
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            return event
    return {"event": "log", "level": "output", "message": text}


class StageProgress:
    """Overall percentage from stage / progress events; it never goes backwards."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(STAGE_WEIGHTS if weights is None else weights)
        self.base = 0.0          # weight of the finished stages
        self.current = ""
        self.fraction = 0.0
        self.percent = 0.0

    def _total(self) -> float:
        return sum(self.weights.values()) or 1.0

    def update(self, event: dict[str, Any]) -> float:
        """Feed one event; returns the overall percentage (0-99 until done)."""
        kind = event.get("event")
        if kind == "stage":
            if self.current:
                self.base += self.weights.get(self.current, DEFAULT_WEIGHT)
            self.current = str(event.get("stage", ""))
            self.weights.setdefault(self.current, DEFAULT_WEIGHT)
            self.fraction = 0.0
        elif kind == "progress":
            total = float(event.get("total") or 0)
            if total > 0:
                self.fraction = min(1.0, float(event.get("done") or 0) / total)
        elif kind == "done":
            self.percent = 100.0
            return self.percent
        w = self.weights.get(self.current, DEFAULT_WEIGHT) if self.current else 0.0
        pct = 100.0 * (self.base + w * self.fraction) / self._total()
        self.percent = max(self.percent, min(99.0, pct))
        return self.percent


def _install_hint(module: str, python: str) -> str:
    top = module.split(".", 1)[0]
    if top == "segexplain":
        return ("the plugin folder must be named 'segexplain' (reinstall it from the zip), "
                "or run `make setup` in a checkout")
    if top == "osgeo":
        return ("use a Python that has GDAL's bindings (on Debian/Ubuntu a venv made "
                "with --system-site-packages after `apt-get install python3-gdal`)")
    pip = PIP_NAMES.get(top, top)
    return f"install it with `{python} -m pip install -r requirements.txt` (or `... {pip}`)"


def explain_failure(python: str, returncode: int | None, error: dict[str, Any] | None,
                    stderr_tail: Iterable[str]) -> str:
    """One line for the message bar: what went wrong in the worker and what to do."""
    where = "choose the worker Python in segexplain ▸ Settings… and press Check environment"
    lines = [ln.strip() for ln in stderr_tail if ln.strip()]
    text = error.get("message", "") if error else ""
    blob = "\n".join([text, *lines])
    missing = _NO_MODULE.search(blob)
    if missing:
        mod = missing.group(1)
        return (f"the worker Python {python} cannot import {mod}: "
                f"{_install_hint(mod, python)}; or {where}")
    if error:
        name = str(error.get("error", "error"))
        msg = " ".join(text.split()) or name
        if name == "DependencyError":  # the worker Python lacks a package: another Python?
            return f"the worker Python {python}: {msg}; or {where}"
        return msg if not msg.startswith("unexpected") else f"{msg}; if it persists, {where}"
    usage = [ln for ln in lines if ": error: " in ln]
    if usage:
        return (f"the worker's segexplain refused the arguments ({usage[-1]}); update the "
                f"worker environment to this plugin's version, or {where}")
    if returncode is not None and returncode < 0:
        sig = -returncode
        return (f"the worker was stopped by signal {sig}"
                f"{' (out of memory?)' if sig == 9 else ''}: try a smaller patch size or "
                "fewer images, and see the segexplain log panel")
    last = lines[-1] if lines else "no output"
    return (f"the worker {python} exited with status {returncode} ({last}); "
            f"see the segexplain log panel; {where}")


# -- the process ------------------------------------------------------------------------
class WorkerRun:
    """One run of the core command line in a child process (no Qt; any thread)."""

    def __init__(self, python: str, command: str, args: Sequence[str | os.PathLike[str]],
                 *, out: str | Path | None = None, folder: Path | None = None,
                 env: dict[str, str] | None = None, grace: float = 5.0) -> None:
        self.python = python
        self.command = command
        self.argv = worker_command(python, command, args)
        self.out = Path(out) if out else None
        self.env = env if env is not None else settings.worker_env(folder)
        self.grace = grace
        self.proc: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] | None = None
        self.error: dict[str, Any] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=200)
        self.output: list[str] = []  # every stdout/stderr line, for the log panel
        self._queue: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self.cancelled = False

    @property
    def pid(self) -> int | None:
        """The worker's process id once started."""
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Start the process; a missing interpreter raises WorkerError with what to do."""
        kwargs = process.group_kwargs()
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace",
                bufsize=1, env=self.env, **kwargs)
        except OSError as exc:
            raise WorkerError(
                f"cannot start the worker Python {self.python!r} ({exc.strerror or exc}): "
                "choose an existing Python in segexplain ▸ Settings… and press Check "
                "environment") from exc
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            t = threading.Thread(target=self._pump, args=(name, stream), daemon=True,
                                 name=f"segexplain-{name}")
            t.start()
            self._threads.append(t)

    def _pump(self, name: str, stream: Any) -> None:
        try:
            for line in stream:
                self._queue.put((name, line))
        except (OSError, ValueError):
            pass
        finally:
            self._queue.put((name, None))

    def run(self, on_event: Callable[[dict[str, Any]], None] | None = None,
            is_cancelled: Callable[[], bool] | None = None,
            poll: float = 0.1) -> dict[str, Any]:
        """Start (if needed), follow the run to its end and return the done result.

        Raises CancelledError when `is_cancelled()` turned true (the worker is stopped and
        its half bundle removed) and WorkerError with an explanation when the run failed.
        """
        if self.proc is None:
            self.start()
        assert self.proc is not None
        open_streams = 2
        exited_at: float | None = None
        while open_streams or self.proc.poll() is None:
            if is_cancelled is not None and is_cancelled():
                self.cancel()
                raise CancelledError(f"{self.command} cancelled; nothing was left half-written")
            try:
                name, line = self._queue.get(timeout=poll)
            except queue.Empty:
                if self.proc.poll() is not None:  # a helper may still hold the pipes
                    exited_at = exited_at or time.monotonic()
                    if time.monotonic() - exited_at > 2.0:
                        break
                continue
            if line is None:
                open_streams -= 1
                continue
            self.output.append(line.rstrip("\r\n"))
            if name == "err":
                self.stderr_tail.append(line.rstrip("\r\n"))
                continue
            event = parse_line(line)
            if event["event"] == "done":
                self.result = event.get("result") or {}
            elif event["event"] == "error":
                self.error = event
            if on_event is not None:
                on_event(event)
        code = self.proc.wait()
        if code == 0 and self.result is not None:
            return self.result
        if self.out is not None:
            cleanup_partials(self.out, [self.proc.pid])
        if self.error and self.error.get("error") == "CancelledError":
            raise CancelledError(str(self.error.get("message", "cancelled")))
        raise WorkerError(explain_failure(self.python, code, self.error, self.stderr_tail))

    def cancel(self) -> None:
        """Stop the worker: ask its group, force it after `grace` s; clean up."""
        self.cancelled = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            process.terminate_group(proc)
            try:
                proc.wait(timeout=self.grace)
            except subprocess.TimeoutExpired:
                process.kill_group(proc)
                proc.wait(timeout=30)
        if proc is not None:  # helpers left in the group (reader pools, dask workers)
            process.kill_group(proc)
        for t in self._threads:
            t.join(timeout=2)
        self._drain()
        if self.out is not None and proc is not None:
            cleanup_partials(self.out, [proc.pid])

    def _drain(self) -> None:
        """Keep the output that arrived after the last event was read (for the log)."""
        while True:
            try:
                name, line = self._queue.get_nowait()
            except queue.Empty:
                return
            if line is None:
                continue
            self.output.append(line.rstrip("\r\n"))
            if name == "err":
                self.stderr_tail.append(line.rstrip("\r\n"))


def log_output(run: WorkerRun, ok: bool) -> None:
    """The worker's command line and last 400 output lines, to the segexplain log panel."""
    log = "\n".join(run.output[-400:])
    if log:  # QgsMessageLog may be called from any thread
        QgsMessageLog.logMessage(f"{' '.join(run.argv)}\n{log}", LOG_TAG,
                                 Qgis.MessageLevel.Info if ok else Qgis.MessageLevel.Warning)


# -- QGIS task --------------------------------------------------------------------------
class CoreTask(QgsTask):
    """A core command run as a QGIS background task (progress in the task manager).

    Signals (delivered to the main thread): `workerEvent(dict)` for every protocol event,
    `succeeded(dict)` with the done result, `failed(str)` with the explained error
    ("" when cancelled). `on_done(result)` runs in the main thread after success (the
    plugin opens the bundle there). `cleanup` paths are removed when the task ends.
    """

    workerEvent = pyqtSignal(dict)
    succeeded = pyqtSignal(dict)
    failed = pyqtSignal(str)

    def __init__(self, description: str, command: str, args: Sequence[str | os.PathLike[str]],
                 *, python: str | None = None, out: str | Path | None = None,
                 folder: Path | None = None, on_done: Callable[[dict[str, Any]], None] | None
                 = None, iface: Any = None, cleanup: Iterable[Path] = (),
                 grace: float = 5.0) -> None:
        super().__init__(description, QgsTask.Flag.CanCancel)
        self.python = python or settings.worker_python()
        self.worker = WorkerRun(self.python, command, args, out=out, folder=folder,
                                grace=grace)
        self.on_done = on_done
        self.iface = iface
        self.cleanup = list(cleanup)
        self.stages = StageProgress()
        self.result: dict[str, Any] | None = None
        self.message = ""
        self.was_cancelled = False
        self.started_at = 0.0
        self.run_thread: int | None = None  # the thread the worker was followed in

    def run(self) -> bool:  # task-manager thread: no widgets here
        self.started_at = time.monotonic()
        self.run_thread = threading.get_ident()
        try:
            self.result = self.worker.run(self._on_event, self.isCanceled)
            return True
        except CancelledError:
            self.was_cancelled = True
            self.message = ""
            return False
        except WorkerError as exc:
            self.message = str(exc)
            return False
        except Exception as exc:  # noqa: BLE001 (a task must never raise into Qt)
            self.message = f"unexpected {type(exc).__name__}: {exc}"
            return False
        finally:
            for p in self.cleanup:
                shutil.rmtree(p, ignore_errors=True)

    def _on_event(self, event: dict[str, Any]) -> None:
        self.setProgress(self.stages.update(event))
        self.workerEvent.emit(event)

    def finished(self, ok: bool) -> None:  # main thread
        log_output(self.worker, ok)
        if ok and self.result is not None:
            self.succeeded.emit(self.result)
            if self.on_done is not None:
                try:
                    self.on_done(self.result)
                except Exception as exc:  # noqa: BLE001 (UI boundary)
                    self._bar(f"the run finished but opening its result failed: {exc}",
                              Qgis.MessageLevel.Critical)
            return
        if self.was_cancelled or (self.isCanceled() and not self.message):
            self.failed.emit("")
            self._bar(f"{self.description()}: cancelled; no bundle was written",
                      Qgis.MessageLevel.Info)
            return
        msg = self.message or "the worker stopped without a result"
        QgsMessageLog.logMessage(msg, LOG_TAG, Qgis.MessageLevel.Critical)
        self.failed.emit(msg)
        self._bar(msg, Qgis.MessageLevel.Critical)

    def _bar(self, text: str, level: Any) -> None:
        push_message(self.iface, text, level)


def push_message(iface: Any, text: str, level: Any) -> None:
    """Show `text` in the message bar (errors stay until closed); no-op without iface."""
    if iface is not None:
        critical = level == Qgis.MessageLevel.Critical
        iface.messageBar().pushMessage(LOG_TAG, text, level=level,
                                       duration=0 if critical else 8)
