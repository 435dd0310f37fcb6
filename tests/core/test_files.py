"""core/files.py: which partial bundles a new run may remove, on POSIX and on Windows.

The Windows branch runs here with `sys.platform` forced to "win32" and kernel32's three
calls answered from this machine's real processes (/proc), so the decisions are those
of the Windows code for processes that really run, exited or belong to nobody.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from segexplain.core import files

ERROR_INVALID_PARAMETER = 87


class ProcKernel32:
    """OpenProcess / GetExitCodeProcess / CloseHandle answered from /proc (Linux)."""

    def __init__(self, denied: set[int] = frozenset()) -> None:
        self.denied = set(denied)
        self.error = 0
        self.open: set[int] = set()
        self.closed: list[int] = []

    def open_process(self, pid: int):
        if pid in self.denied:
            self.error = files.ERROR_ACCESS_DENIED
            return None
        if not Path(f"/proc/{pid}").exists():
            self.error = ERROR_INVALID_PARAMETER
            return None
        self.open.add(pid)
        return pid  # the handle

    def last_error(self) -> int:
        return self.error

    def exit_code(self, handle):
        status = Path(f"/proc/{handle}/status").read_text()
        # a zombie has exited (Windows keeps an exited process's object while handles
        # to it are open, with its exit code)
        return 0 if "zombie" in status else files.STILL_ACTIVE

    def close(self, handle) -> None:
        self.open.discard(handle)
        self.closed.append(handle)


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_alive_windows_decisions(child):
    api = ProcKernel32(denied={1})
    assert files._alive_windows(child.pid, api) is True
    assert files._alive_windows(os.getpid(), api) is True
    assert files._alive_windows(1, api) is True  # exists but may not be queried
    child.kill()
    child.wait()  # reaped: no such process any more
    assert files._alive_windows(child.pid, api) is False
    assert not api.open and api.closed  # every handle opened was closed


def test_alive_windows_exited_but_not_reaped(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        for _ in range(100):  # exited, not yet waited for: a zombie with an exit code
            if "zombie" in Path(f"/proc/{proc.pid}/status").read_text():
                break
            time.sleep(0.05)
        assert files._alive_windows(proc.pid, ProcKernel32()) is False
    finally:
        proc.wait()


def test_cleanup_partials_on_windows_keeps_live_runs(tmp_path, monkeypatch, child):
    out = tmp_path / "run.segx"
    live = tmp_path / f"run.segx.partial-{child.pid}"
    dead_pid = _dead_pid()
    dead = tmp_path / f"run.segx.partial-{dead_pid}"
    for d in (live, dead):
        (d / "arrays").mkdir(parents=True)
    api = ProcKernel32()
    monkeypatch.setattr(files.sys, "platform", "win32")
    monkeypatch.setattr(files, "Kernel32", lambda: api)
    assert files.cleanup_partials(out, []) == [dead]
    assert live.is_dir()  # another run that is still writing: left alone
    assert files.cleanup_partials(out, [child.pid]) == [live]  # its own: removed


def test_cleanup_partials_posix(tmp_path, child):
    out = tmp_path / "run.segx"
    live = tmp_path / f"run.segx.partial-{child.pid}"
    dead = tmp_path / f"run.segx.partial-{_dead_pid()}"
    for d in (live, dead):
        d.mkdir()
    assert files.cleanup_partials(out, []) == [dead] and live.is_dir()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
