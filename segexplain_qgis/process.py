"""A child process in its own process group, and stopping the whole group (POSIX, Windows).

The worker starts helpers (reader threads live in it, but Dask workers and onnxruntime
pools may be processes): cancelling must stop them all, on every OS QGIS runs on.

- POSIX: the child starts a new session (its pid is the group id); a polite stop is
  SIGTERM to the group (the core turns it into CancelledError and removes its half
  bundle), a forced stop SIGKILL to the group.
- Windows: the child starts with CREATE_NEW_PROCESS_GROUP (and no console window); a
  polite stop is CTRL_BREAK_EVENT to that group (the core handles SIGBREAK like
  SIGTERM; it reaches only a child that shares a console), a forced stop
  `taskkill /PID PID /T /F`, which ends the process and every process it started.

Standard library only; `windows` parameters let the tests run the Windows branch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

WINDOWS = sys.platform.startswith("win")
#: subprocess.CREATE_NEW_PROCESS_GROUP and CREATE_NO_WINDOW (Windows-only attributes).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
#: signal.CTRL_BREAK_EVENT (Windows-only attribute).
CTRL_BREAK_EVENT = 1


def group_kwargs(windows: bool = WINDOWS) -> dict[str, Any]:
    """`subprocess.Popen` arguments that start the child in a process group of its own."""
    if windows:
        return {"creationflags": CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW}
    return {"start_new_session": True}


def taskkill_command(pid: int) -> list[str]:
    """Windows: force-end `pid` and every process it started."""
    return ["taskkill", "/PID", str(pid), "/T", "/F"]


def terminate_group(proc: subprocess.Popen[Any], windows: bool = WINDOWS) -> None:
    """Ask the child's group to stop (SIGTERM / CTRL_BREAK); a gone group is fine."""
    try:
        if windows:
            proc.send_signal(getattr(signal, "CTRL_BREAK_EVENT", CTRL_BREAK_EVENT))
        else:
            os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError, OSError, ValueError):
        pass


def kill_group(proc: subprocess.Popen[Any], windows: bool = WINDOWS) -> None:
    """Force the child and its helpers to stop (SIGKILL to the group / taskkill /T /F)."""
    if windows:
        try:
            subprocess.run(taskkill_command(proc.pid), capture_output=True, timeout=30,
                           creationflags=CREATE_NO_WINDOW if WINDOWS else 0)
        except (OSError, subprocess.SubprocessError):
            pass
        if proc.poll() is None:  # taskkill missing or refused: at least the child
            proc.kill()
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
