"""Small file helpers (standard library only): the core and the QGIS plugin share them."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (on Windows: unknown, so False)."""
    if sys.platform.startswith("win"):
        return False  # cannot tell cheaply; only the run's own pid is cleaned there
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
