"""Progress reporting for people (a bar on stderr) and programs (JSON lines on stdout).

JSON-lines protocol, one object per line on stdout:

    {"event": "stage", "stage": "infer", "total": 320}
    {"event": "progress", "stage": "infer", "done": 64, "total": 320}
    {"event": "log", "level": "warning", "message": "..."}
    {"event": "done", "result": {...}}
    {"event": "error", "error": "GridMismatchError", "message": "..."}
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


class Progress:
    """Reports stages and counts; `mode` is "bar", "jsonl" or "none"."""

    def __init__(self, mode: str = "bar", stream: IO[str] | None = None,
                 min_interval: float = 0.2) -> None:
        if mode not in ("bar", "jsonl", "none"):
            raise ValueError(f"progress mode {mode!r}: expected 'bar', 'jsonl' or 'none'")
        self.mode = mode
        self.stream = stream if stream is not None else (
            sys.stdout if mode == "jsonl" else sys.stderr)
        self.min_interval = min_interval
        self.stage_name = ""
        self.total = 0
        self.done = 0
        self._last = 0.0
        self._start = time.monotonic()

    # -- events --------------------------------------------------------------
    def _emit(self, obj: dict[str, Any]) -> None:
        self.stream.write(json.dumps(obj) + "\n")
        self.stream.flush()

    def stage(self, name: str, total: int = 0) -> None:
        """Start a stage of `total` steps (0 when unknown)."""
        self._finish_bar()
        self.stage_name, self.total, self.done = name, int(total), 0
        self._start = time.monotonic()
        if self.mode == "jsonl":
            self._emit({"event": "stage", "stage": name, "total": self.total})
        elif self.mode == "bar":
            self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        """Count `n` finished steps of the current stage."""
        self.done += n
        now = time.monotonic()
        if now - self._last < self.min_interval and self.done < self.total:
            return
        self._last = now
        if self.mode == "jsonl":
            self._emit({"event": "progress", "stage": self.stage_name,
                        "done": self.done, "total": self.total})
        elif self.mode == "bar":
            self._draw()

    def log(self, message: str, level: str = "info") -> None:
        """A message for the user (warnings about input, chosen settings...)."""
        if self.mode == "jsonl":
            self._emit({"event": "log", "level": level, "message": message})
        elif self.mode == "bar":
            self._finish_bar()
            self.stream.write(f"{level}: {message}\n" if level != "info" else f"{message}\n")
            self.stream.flush()

    def finish(self, result: dict[str, Any] | None = None) -> None:
        """The run succeeded."""
        self._finish_bar()
        if self.mode == "jsonl":
            self._emit({"event": "done", "result": result or {}})

    def fail(self, error: BaseException) -> None:
        """The run failed: one event (jsonl) or one line (bar)."""
        self._finish_bar()
        name = type(error).__name__
        if self.mode == "jsonl":
            self._emit({"event": "error", "error": name, "message": str(error)})
        else:
            sys.stderr.write(f"segexplain: error: {error}\n")
            sys.stderr.flush()

    # -- bar -----------------------------------------------------------------
    def _draw(self, force: bool = False) -> None:
        if not self.stage_name:
            return
        elapsed = time.monotonic() - self._start
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * 30)
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else 0.0
            line = (f"\r{self.stage_name:<12} [{'#' * filled}{'.' * (30 - filled)}] "
                    f"{self.done}/{self.total} {elapsed:5.1f}s eta {eta:5.1f}s")
        else:
            line = f"\r{self.stage_name:<12} {self.done} {elapsed:5.1f}s"
        self.stream.write(line)
        self.stream.flush()
        self._bar_open = True

    def _finish_bar(self) -> None:
        if self.mode == "bar" and getattr(self, "_bar_open", False):
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
            self._bar_open = False


NULL_PROGRESS = Progress("none")
