"""Compare a virtual environment with a lock file; plan what `setup.sh` installs.

Standard library (and pip's own vendored `packaging`) only: it runs in any Python that
has pip, before anything else is installed.

    python scripts/envlock.py check LOCK [--venv DIR]
        exit 1 with one line per difference when the venv is not exactly the lock: a
        locked package missing from the venv's own site-packages (a copy in Debian's
        dist-packages does not count: it is not the locked, hash-checked file), another
        version, a package the lock does not have, `pip check` failures of the venv's
        packages, or a lock older than requirements*.txt.
    python scripts/envlock.py plan LOCK --need FILE --remove FILE [--venv DIR]
        FILE --need: the lock entries (with their hashes) to install; FILE --remove:
        the venv's packages to uninstall first (other versions, not in the lock).
    python scripts/envlock.py input-hash FILE...
        sha256 of requirement files and the files they include (-r / -c).
    python scripts/envlock.py pins LOCK
        the lock's versions as constraints (NAME==VERSION, no hashes), for resolving
        the worker and field locks with the versions of the development lock.

The venv is made with --system-site-packages for what pip cannot provide (QGIS's
bindings, PyQt5, GDAL's osgeo); every package that pip can provide is in the lock and
installed into the venv itself, so Debian's copies never stand in for a locked package.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

#: Installed in every venv by `python -m venv` (ensurepip): checked when a lock has them,
#: never "not in the lock".
INSTALLER = {"pip", "setuptools", "wheel"}
_HEADER_INPUTS = re.compile(r"^# inputs-sha256: ([0-9a-f]{64})$")
_HEADER_FILES = re.compile(r"^#   (.+)$")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class Entry:
    """One pinned package of a lock file."""

    name: str
    version: str
    marker: str
    text: str                      # the entry as written, with its --hash lines
    hashes: list[str] = field(default_factory=list)


def read_lock(path: Path) -> list[Entry]:
    """The pinned entries of a uv / pip-tools lock (name==version ; marker + hashes)."""
    entries: list[Entry] = []
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue
        logical += line.rstrip("\\").strip() + " "
        if line.endswith("\\"):
            continue
        parts = logical.split()
        logical = ""
        req = " ".join(p for p in parts if not p.startswith("--hash="))
        hashes = [p.split("=", 1)[1] for p in parts if p.startswith("--hash=")]
        spec, _, marker = req.partition(";")
        m = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*(\S+)\s*", spec)
        if m is None:
            raise SystemExit(f"{path}: cannot read the entry {req!r}: expected NAME==VERSION")
        text = req.strip() + "".join(f" \\\n    --hash={h}" for h in hashes)
        entries.append(Entry(normalize(m.group(1)), m.group(3), marker.strip(), text, hashes))
    return entries


def pins(entries: list[Entry]) -> str:
    """NAME==VERSION lines; a marker only where the lock has several versions of NAME.

    (Markers on every constraint make uv split the resolution on them, into splits
    that no wheel of some packages fits.)
    """
    count: dict[str, int] = {}
    for e in entries:
        count[e.name] = count.get(e.name, 0) + 1
    return "".join(f"{e.name}=={e.version}" + (f" ; {e.marker}" if count[e.name] > 1 else "")
                   + "\n" for e in entries)


def _marker_applies(marker: str) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:
        from pip._vendor.packaging.markers import Marker
    return bool(Marker(marker).evaluate())


def applicable(entries: list[Entry]) -> dict[str, Entry]:
    """Entries whose environment marker holds for this Python, by name."""
    return {e.name: e for e in entries if _marker_applies(e.marker)}


def venv_site(venv: Path | None) -> list[Path]:
    """site-packages of `venv` (default: this Python's), never the system's."""
    if venv is None:
        paths = sysconfig.get_paths()
        return sorted({Path(paths["purelib"]), Path(paths["platlib"])})
    found = sorted(venv.glob("lib/python3*/site-packages")) + sorted(
        venv.glob("Lib/site-packages"))
    return found


def installed(site: list[Path]) -> dict[str, str]:
    """Distributions installed in these folders: name -> version."""
    from importlib.metadata import distributions

    out: dict[str, str] = {}
    for dist in distributions(path=[str(p) for p in site]):
        name = dist.metadata["Name"]
        if name:
            out[normalize(name)] = dist.version
    return out


def differences(lock: dict[str, Entry], have: dict[str, str]) -> tuple[
        list[Entry], list[str], list[str]]:
    """(entries to install, names to uninstall first, lines that describe it all)."""
    need, remove, lines = [], [], []
    for name, e in sorted(lock.items()):
        v = have.get(name)
        if v is None:
            need.append(e)
            lines.append(f"missing: {name}=={e.version}")
        elif v != e.version:
            need.append(e)
            remove.append(name)
            lines.append(f"other version: {name} {v} (the lock has {e.version})")
    for name in sorted(set(have) - set(lock) - INSTALLER):
        remove.append(name)
        lines.append(f"not in the lock: {name} {have[name]}")
    return need, remove, lines


def pip_check(python: str, own: set[str]) -> list[str]:
    """`pip check` lines about the venv's own packages (Debian's are not ours to fix)."""
    proc = subprocess.run([python, "-m", "pip", "check", "--disable-pip-version-check"],
                          capture_output=True, text=True)
    lines = []
    for line in proc.stdout.splitlines():
        first = line.split(" ", 1)[0]
        if normalize(first) in own:
            lines.append(f"pip check: {line}")
    return lines


def _includes(path: Path, seen: set[Path]) -> list[Path]:
    if path in seen:
        return []
    seen.add(path)
    files = [path]
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        for flag in ("-r", "-c", "--requirement", "--constraint"):
            if line.startswith(flag + " "):
                files += _includes(path.parent / line[len(flag):].strip(), seen)
    return files


def input_hash(files: list[str]) -> str:
    """sha256 over the named requirement files and those they include (-r, -c)."""
    h = hashlib.sha256()
    seen: set[Path] = set()
    for name in files:
        if name.startswith("-"):
            continue
        for f in _includes(Path(name), seen):
            h.update(f.as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def stale(lock_path: Path) -> str | None:
    """A line saying the lock is older than its inputs, or None."""
    want, files = None, None
    for line in lock_path.read_text(encoding="utf-8").splitlines()[:4]:
        if m := _HEADER_INPUTS.match(line):
            want = m.group(1)
        elif (m := _HEADER_FILES.match(line)) and files is None:
            files = m.group(1).split()
    if want is None or files is None:
        return f"{lock_path} has no inputs-sha256 header: run `make lock`"
    root = lock_path.resolve().parent
    missing = [f for f in files if not f.startswith("-") and not (root / f).is_file()]
    if missing:
        return f"{lock_path}: input {missing[0]} is missing: run `make lock`"
    import os

    cwd = os.getcwd()
    try:
        os.chdir(root)
        got = input_hash(files)
    finally:
        os.chdir(cwd)
    if got != want:
        return (f"{lock_path.name} is older than {' '.join(f for f in files if f[0] != '-')}: "
                "run `make lock` and commit the lock")
    return None


def main(argv: list[str] | None = None) -> int:
    """Command line (see the module doc)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("lock", type=Path)
    c.add_argument("--venv", type=Path, default=None)
    pl = sub.add_parser("plan")
    pl.add_argument("lock", type=Path)
    pl.add_argument("--venv", type=Path, default=None)
    pl.add_argument("--need", type=Path, required=True)
    pl.add_argument("--remove", type=Path, required=True)
    ih = sub.add_parser("input-hash")
    ih.add_argument("files", nargs="+")
    pn = sub.add_parser("pins")
    pn.add_argument("lock", type=Path)
    a = p.parse_args(argv)
    if a.cmd == "input-hash":
        print(input_hash(a.files))
        return 0
    if a.cmd == "pins":
        print(pins(read_lock(a.lock)), end="")
        return 0
    lock = applicable(read_lock(a.lock))
    site = venv_site(a.venv)
    have = installed(site)
    need, remove, lines = differences(lock, have)
    if a.cmd == "plan":
        a.need.write_text("".join(e.text + "\n" for e in need), encoding="utf-8")
        a.remove.write_text("".join(n + "\n" for n in remove), encoding="utf-8")
        print(f"{len(need)} to install, {len(remove)} to remove ({len(lock)} locked)")
        return 0
    python = str(a.venv / "bin" / "python") if a.venv else sys.executable
    lines += pip_check(python, set(have))
    if (why := stale(a.lock)) is not None:
        lines.insert(0, why)
    where = a.venv or Path(sys.prefix)
    if lines:
        print(f"the venv {where} differs from {a.lock} ({len(lines)} differences); "
              "`make setup` installs the lock:", file=sys.stderr)
        for line in lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    print(f"the venv {where} matches {a.lock} ({len(lock)} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
