"""Small file helpers (standard library only): the core and the QGIS plugin share them."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


#: OpenProcess right that is granted on other users' processes too (Windows Vista on).
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
STILL_ACTIVE = 259
ERROR_ACCESS_DENIED = 5


class Kernel32:
    """The kernel32 calls `_alive` needs on Windows (ctypes; Windows only)."""

    def __init__(self) -> None:
        import ctypes
        from ctypes import wintypes

        self._ctypes = ctypes
        k = getattr(ctypes, "WinDLL")("kernel32", use_last_error=True)  # noqa: B009
        k.OpenProcess.restype = wintypes.HANDLE
        k.OpenProcess.argtypes = (wintypes.DWORD, wintypes.BOOL, wintypes.DWORD)
        k.GetExitCodeProcess.argtypes = (wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD))
        k.CloseHandle.argtypes = (wintypes.HANDLE,)
        self._k = k

    def open_process(self, pid: int) -> Any:
        """A query handle of `pid`, or None (see `last_error`)."""
        return self._k.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid) or None

    def last_error(self) -> int:
        """The calling thread's last Windows error code."""
        return int(getattr(self._ctypes, "get_last_error")())  # noqa: B009

    def exit_code(self, handle: Any) -> int | None:
        """The process's exit code (STILL_ACTIVE while it runs), or None when unknown."""
        from ctypes import wintypes

        code = wintypes.DWORD()
        if not self._k.GetExitCodeProcess(handle, self._ctypes.byref(code)):
            return None
        return int(code.value)

    def close(self, handle: Any) -> None:
        """Close a handle from `open_process`."""
        self._k.CloseHandle(handle)


def _alive_windows(pid: int, api: Any = None) -> bool:
    """Windows: whether `pid` runs; when it cannot be told, True (keep the folder)."""
    api = api if api is not None else Kernel32()
    handle = api.open_process(pid)
    if handle is None:  # no such process, or one we may not query (it exists)
        return bool(api.last_error() == ERROR_ACCESS_DENIED)
    try:
        code = api.exit_code(handle)
        return code is None or code == STILL_ACTIVE
    finally:
        api.close(handle)


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (Windows: OpenProcess + GetExitCodeProcess)."""
    if sys.platform.startswith("win"):
        return _alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_partials(out: Path, pids: Iterable[int] = ()) -> list[Path]:
    """Remove `out.partial-PID` folders of the given (or of dead) processes.

    A killed writer can also leave `out.old-PID` (the previous bundle moved aside just
    before the new one was renamed into place): it is put back when `out` is missing.
    Returns the removed folders.
    """
    removed: list[Path] = []
    mine = {int(p) for p in pids}
    parent = out.parent
    if not parent.is_dir():
        return removed
    for kind in ("partial", "old"):
        for p in parent.glob(f"{out.name}.{kind}-*"):
            tail = p.name.rsplit("-", 1)[-1]
            if not tail.isdigit():
                continue
            pid = int(tail)
            if pid not in mine and _alive(pid):
                continue  # another run is writing it
            if kind == "old" and not out.exists():
                os.replace(p, out)
                continue
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed
