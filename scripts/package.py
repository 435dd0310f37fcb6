"""Build and check the plugin zip that QGIS installs with "Install from ZIP".

    python scripts/package.py build [--pyqtgraph WHEEL_OR_DIR] [--out dist]
    python scripts/package.py check dist/segexplain-VERSION.zip

`build` writes dist/segexplain-VERSION.zip with the root folder `segexplain/`: the plugin
(`__init__.py`, metadata.txt, icons, compiled resources_rc.py, segexplain_qgis/), the
core the worker runs (core/), requirements.txt + constraints.txt for the worker
environment, the user docs, and a fallback copy of pyqtgraph under `ext/pyqtgraph`
(used only when QGIS's Python has none; see segexplain_qgis/pg.py). No tests, bench,
demo, scripts or development files.

pyqtgraph comes from --pyqtgraph (a wheel or a package folder), else a wheel already in
build/wheels/, else `pip download pyqtgraph==PYQTGRAPH_VERSION --no-deps`, else the
importable pyqtgraph package (copied as is).

`check` validates a zip: the metadata fields the QGIS plugin repository requires, the
files they point to, no development files, every module compiles, and bandit finds
nothing in the plugin's own code (B101 assert, B404 import subprocess and B603
subprocess without a shell are allowed: the worker is started with an argument list,
never a shell). The vendored pyqtgraph is third-party code: its bandit findings are
counted and printed, not gated.
"""

from __future__ import annotations

import argparse
import configparser
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "segexplain"
PYQTGRAPH_VERSION = "0.13.7"
#: Top-level files and folders of the checkout that go into the zip.
INCLUDE_FILES = ("__init__.py", "metadata.txt", "requirements.txt", "constraints.txt",
                 "requirements.lock", "requirements-field.txt", "requirements-field.lock",
                 "README.md", "LICENSE", "resources.qrc")
INCLUDE_DIRS = ("core", "segexplain_qgis", "icons")
INCLUDE_DOCS = ("bundle-format.md", "offline.md")
#: Never in the zip.
EXCLUDE_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "tests",
                 "bench", "demo", "scripts", ".ci", ".venv", ".test-cache", "build", "dist",
                 "wheelhouse", "wheelhouse-field", ".git"}
EXCLUDE_SUFFIXES = (".pyc", ".pyo", ".orig", ".rej", ".swp")
FORBIDDEN_TOP = ("tests", "bench", "demo", "scripts", ".ci", ".venv", "Makefile",
                 "pyproject.toml", "requirements-dev.txt", ".gitignore", ".test-cache")
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version",
                     "author", "email")
#: Present, but empty while no public repository exists (never an invented address);
#: the QGIS plugin repository needs `repository` filled in before an upload.
URL_METADATA = ("tracker", "homepage", "repository")
#: pyqtgraph parts left out of the fallback copy (not imported by `import pyqtgraph`).
PYQTGRAPH_SKIP = ("examples",)
BANDIT_SKIPS = "B101,B404,B603"


def read_metadata(text: str) -> dict[str, str]:
    """Return the [general] section of a metadata.txt."""
    cp = configparser.ConfigParser(interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read_string(text)
    return dict(cp["general"]) if cp.has_section("general") else {}


def version() -> str:
    """Return the plugin version from metadata.txt."""
    return read_metadata((ROOT / "metadata.txt").read_text(encoding="utf-8"))["version"]


def _keep(path: Path) -> bool:
    return not (set(path.parts) & EXCLUDE_PARTS) and not path.name.endswith(EXCLUDE_SUFFIXES)


def compile_resources(build: Path) -> Path:
    """Compile resources.qrc into build/resources_rc.py (pyrcc5, else PyQt5.pyrcc_main)."""
    out = build / "resources_rc.py"
    for cmd in (["pyrcc5", "-o", str(out), "resources.qrc"],
                [sys.executable, "-m", "PyQt5.pyrcc_main", "-o", str(out), "resources.qrc"]):
        try:
            subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
            return out
        except (OSError, subprocess.CalledProcessError):
            continue
    raise SystemExit("package: cannot compile resources.qrc: install pyqt5-dev-tools (pyrcc5)")


def find_pyqtgraph(build: Path, given: str | None) -> tuple[Path, str]:
    """Return (path to a pyqtgraph wheel or package folder, where it came from)."""
    if given:
        return Path(given), "given"
    wheels = build / "wheels"
    found = sorted(wheels.glob(f"pyqtgraph-{PYQTGRAPH_VERSION}-*.whl"))
    if found:
        return found[-1], "build/wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                           "--disable-pip-version-check", "-q", "-d", str(wheels),
                           f"pyqtgraph=={PYQTGRAPH_VERSION}"], capture_output=True, text=True)
    found = sorted(wheels.glob(f"pyqtgraph-{PYQTGRAPH_VERSION}-*.whl"))
    if proc.returncode == 0 and found:
        return found[-1], "pip download"
    try:
        import pyqtgraph
    except ImportError as exc:
        raise SystemExit(f"package: no pyqtgraph: pip download failed ({proc.stderr.strip()}) "
                         "and none is importable; pass --pyqtgraph WHEEL") from exc
    return Path(pyqtgraph.__file__).parent, f"installed {pyqtgraph.__version__}"


def add_pyqtgraph(zf: zipfile.ZipFile, source: Path) -> int:
    """Write pyqtgraph (minus its examples) under segexplain/ext/; return the file count."""
    prefix = f"{NAME}/ext/"
    n = 0
    if source.is_file():  # a wheel
        with zipfile.ZipFile(source) as whl:
            for info in whl.infolist():
                parts = Path(info.filename).parts
                if not parts or info.is_dir():
                    continue
                if parts[0] == "pyqtgraph" and (len(parts) < 2 or parts[1] not in
                                                PYQTGRAPH_SKIP) and _keep(Path(info.filename)):
                    zf.writestr(prefix + info.filename, whl.read(info))
                    n += 1
                elif parts[0].endswith(".dist-info") and parts[-1] in ("LICENSE", "LICENSE.txt",
                                                                       "METADATA"):
                    zf.writestr(f"{prefix}pyqtgraph/{parts[-1]}", whl.read(info))
        return n
    for f in sorted(source.rglob("*")):
        rel = f.relative_to(source)
        if f.is_file() and _keep(rel) and (not rel.parts or rel.parts[0] not in PYQTGRAPH_SKIP):
            zf.write(f, f"{prefix}pyqtgraph/{rel.as_posix()}")
            n += 1
    return n


def build(out_dir: Path, pyqtgraph: str | None = None) -> Path:
    """Write dist/segexplain-VERSION.zip; return its path."""
    build_dir = ROOT / "build"
    build_dir.mkdir(exist_ok=True)
    rc = compile_resources(build_dir)
    pg_source, pg_origin = find_pyqtgraph(build_dir, pyqtgraph)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{NAME}-{version()}.zip"
    tmp = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in INCLUDE_FILES:
            if (ROOT / name).is_file():
                zf.write(ROOT / name, f"{NAME}/{name}")
        for d in INCLUDE_DIRS:
            for f in sorted((ROOT / d).rglob("*")):
                rel = f.relative_to(ROOT)
                if f.is_file() and _keep(rel):
                    zf.write(f, f"{NAME}/{rel.as_posix()}")
        for doc in INCLUDE_DOCS:
            if (ROOT / "docs" / doc).is_file():
                zf.write(ROOT / "docs" / doc, f"{NAME}/docs/{doc}")
        zf.write(rc, f"{NAME}/resources_rc.py")
        n_pg = add_pyqtgraph(zf, pg_source)
    tmp.replace(target)
    print(f"package: wrote {target} ({target.stat().st_size / 1e6:.1f} MB; pyqtgraph "
          f"from {pg_origin}, {n_pg} files)")
    return target


def check(zip_path: Path, vendored_report: bool = False) -> list[str]:
    """Return the problems of a plugin zip (empty: it passes).

    `vendored_report` also runs bandit over the vendored pyqtgraph and prints its count
    (slow: about 20 s; information only).
    """
    problems: list[str] = []
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        tops = {n.split("/", 1)[0] for n in names}
        if tops != {NAME}:
            problems.append(f"zip root folders {sorted(tops)}: expected only '{NAME}/'")
        meta_name = f"{NAME}/metadata.txt"
        if meta_name not in names:
            return problems + ["no segexplain/metadata.txt"]
        meta = read_metadata(zf.read(meta_name).decode("utf-8"))
        for key in REQUIRED_METADATA:
            if not meta.get(key, "").strip():
                problems.append(f"metadata.txt: required field {key!r} is missing or empty")
        for key in (*URL_METADATA, "icon"):
            if key not in meta or (key == "icon" and not meta[key].strip()):
                problems.append(f"metadata.txt: field {key!r} is missing")
        for key in URL_METADATA:
            if meta.get(key) and not meta[key].startswith(("http://", "https://")):
                problems.append(f"metadata.txt: {key} {meta[key]!r} is not a URL")
        if meta.get("icon") and f"{NAME}/{meta['icon']}" not in names:
            problems.append(f"metadata.txt: icon {meta['icon']!r} is not in the zip")
        if meta.get("version") and not zip_path.name.endswith(f"-{meta['version']}.zip"):
            problems.append(f"{zip_path.name}: version {meta['version']} not in the file name")
        for req in (f"{NAME}/__init__.py", f"{NAME}/resources_rc.py",
                    f"{NAME}/segexplain_qgis/plugin.py", f"{NAME}/core/cli.py",
                    f"{NAME}/ext/pyqtgraph/__init__.py"):
            if req not in names:
                problems.append(f"missing {req}")
        for n in names:
            parts = n.split("/")
            if len(parts) > 1 and parts[1] in FORBIDDEN_TOP:
                problems.append(f"development file in the zip: {n}")
            if "__pycache__" in parts or n.endswith((".pyc", ".pyo")):
                problems.append(f"compiled file in the zip: {n}")
        with tempfile.TemporaryDirectory(prefix="segexplain-check-") as tmp:
            zf.extractall(tmp)
            root = Path(tmp) / NAME
            for f in sorted(root.rglob("*.py")):
                try:
                    compile(f.read_text(encoding="utf-8"), str(f), "exec")
                except (SyntaxError, UnicodeDecodeError) as exc:
                    problems.append(f"{f.relative_to(tmp)} does not compile: {exc}")
            problems += run_bandit(root, vendored_report)
    return problems


def run_bandit(root: Path, vendored_report: bool = False) -> list[str]:
    """Bandit over the plugin's own code (gated) and the vendored code (counted)."""
    bandit = shutil.which("bandit") or str(Path(sys.executable).with_name("bandit"))
    if not Path(bandit).exists() and shutil.which(bandit) is None:
        return ["bandit is not installed: pip install -r requirements-dev.txt"]
    own = subprocess.run([bandit, "-r", str(root), "-x", str(root / "ext"), "-s",
                          BANDIT_SKIPS, "-f", "json", "-q"], capture_output=True, text=True)
    try:
        issues = json.loads(own.stdout)["results"]
    except (ValueError, KeyError):
        return [f"bandit failed: {own.stderr.strip()[-300:]}"]
    problems = [f"bandit {i['test_id']} {i['issue_text']} at "
                f"{Path(i['filename']).relative_to(root.parent)}:{i['line_number']}"
                for i in issues]
    if vendored_report and (root / "ext").is_dir():
        ext = subprocess.run([bandit, "-r", str(root / "ext"), "-s", BANDIT_SKIPS, "-f",
                              "json", "-q"], capture_output=True, text=True)
        try:
            n = len(json.loads(ext.stdout)["results"])
        except (ValueError, KeyError):
            n = -1
        print(f"check: vendored pyqtgraph (third-party, not gated): {n} bandit finding(s)")
    return problems


def main(argv: list[str] | None = None) -> int:
    """Command line: build or check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write dist/segexplain-VERSION.zip")
    b.add_argument("--out", type=Path, default=ROOT / "dist")
    b.add_argument("--pyqtgraph", default=None, help="pyqtgraph wheel or package folder")
    c = sub.add_parser("check", help="validate a plugin zip")
    c.add_argument("zip", type=Path, nargs="?", default=None)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        build(args.out, args.pyqtgraph)
        return 0
    zip_path = args.zip or ROOT / "dist" / f"{NAME}-{version()}.zip"
    if not zip_path.is_file():
        print(f"check: {zip_path} does not exist; run `make package` first", file=sys.stderr)
        return 2
    problems = check(zip_path, vendored_report=True)
    for p in problems:
        print(f"check: {p}", file=sys.stderr)
    if problems:
        print(f"check: {zip_path.name}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check: {zip_path.name}: metadata, contents and bandit OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
