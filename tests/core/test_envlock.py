"""The lock files and scripts/envlock.py (the venv-vs-lock check `make test` runs first)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ("requirements-dev.lock", "requirements.lock", "requirements-field.lock")


def _envlock():
    spec = importlib.util.spec_from_file_location("envlock", ROOT / "scripts" / "envlock.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["envlock"] = mod
    spec.loader.exec_module(mod)
    return mod


envlock = _envlock()


@pytest.mark.parametrize("name", LOCKS)
def test_committed_locks_are_fresh_complete_and_hashed(name):
    lock = ROOT / name
    assert envlock.stale(lock) is None
    entries = envlock.read_lock(lock)
    assert entries and all(e.hashes for e in entries)
    here = envlock.applicable(entries)
    assert "numpy" in here and here["numpy"].version == "1.26.4"
    assert here["affine"].version == "2.4.0"  # 3.x breaks rasterio 1.4.4's from_origin


def test_locks_share_versions_and_the_field_lock_has_no_torch():
    dev = {e.name: e.version for e in envlock.read_lock(ROOT / "requirements-dev.lock")
           if envlock._marker_applies(e.marker)}
    for name in ("requirements.lock", "requirements-field.lock"):
        for e in envlock.applicable(envlock.read_lock(ROOT / name)).values():
            assert dev[e.name] == e.version, (name, e.name)
    field = envlock.applicable(envlock.read_lock(ROOT / "requirements-field.lock"))
    assert {"onnxruntime", "rasterio", "shapely", "numpy", "pyproj"} <= set(field)
    assert not {"torch", "torchvision", "segmentation-models-pytorch", "timm",
                "scikit-learn", "scipy"} & set(field)
    for pkg in ("import-linter", "ruff", "mypy", "pytest", "pytest-qgis", "bandit", "scipy",
                "pyproj", "pillow", "pyyaml"):
        assert pkg in dev, pkg


def test_torch_hashes_cover_this_machines_wheels():
    """torch / torchvision come from a local index here: the lock has those files' hashes."""
    lock = envlock.applicable(envlock.read_lock(ROOT / "requirements.lock"))
    assert lock["torch"].version == "2.14.1" and lock["torchvision"].version == "0.29.1"
    checked = 0
    for name in ("torch", "torchvision"):
        page = Path(f"/opt/pypi-more/simple/{name}/index.html")
        if not page.is_file():
            continue
        pattern = rf'({name}-{re.escape(lock[name].version)}-[^"#]+)#sha256=([0-9a-f]{{64}})'
        for filename, digest in re.findall(pattern, page.read_text()):
            assert f"sha256:{digest}" in lock[name].hashes, filename
            checked += 1
    if not checked:
        pytest.skip("no local torch index on this machine")


def _fake_site(tmp_path: Path, dists: dict[str, str]) -> Path:
    site = tmp_path / "lib" / "python3.11" / "site-packages"
    for name, version in dists.items():
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\n"
                                       f"Version: {version}\n")
    return tmp_path


def test_plan_and_differences(tmp_path):
    lock = tmp_path / "x.lock"
    lock.write_text(
        "# header\n"
        "alpha==1.0 ; python_full_version < '3.13' \\\n    --hash=sha256:aa \\\n"
        "    --hash=sha256:ab\n"
        "beta==2.0 \\\n    --hash=sha256:bb\n"
        "gamma==3.0 ; sys_platform == 'never' \\\n    --hash=sha256:cc\n"
        "delta_pkg==4.0 \\\n    --hash=sha256:dd\n")
    venv = _fake_site(tmp_path / "venv", {"alpha": "1.0", "beta": "1.9", "extra": "0.1",
                                          "pip": "23.0", "Delta.Pkg": "4.0"})
    need, remove = tmp_path / "need.txt", tmp_path / "remove.txt"
    assert envlock.main(["plan", str(lock), "--venv", str(venv), "--need", str(need),
                         "--remove", str(remove)]) == 0
    assert need.read_text() == "beta==2.0 \\\n    --hash=sha256:bb\n"
    assert remove.read_text().split() == ["beta", "extra"]  # pip stays; gamma not here
    lines = envlock.differences(envlock.applicable(envlock.read_lock(lock)),
                                envlock.installed(envlock.venv_site(venv)))[2]
    assert lines == ["other version: beta 1.9 (the lock has 2.0)",
                     "not in the lock: extra 0.1"]


def test_stale_lock_is_named(tmp_path):
    for name in ("requirements.txt", "requirements-field.txt", "constraints.txt",
                 "requirements-dev.lock", "requirements-field.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    assert envlock.stale(tmp_path / "requirements-field.lock") is None
    with open(tmp_path / "requirements-field.txt", "a") as f:
        f.write("tqdm==4.70.1\n")
    why = envlock.stale(tmp_path / "requirements-field.lock")
    assert why is not None and "run `make lock`" in why and "requirements-field.txt" in why
    (tmp_path / "requirements-dev.lock").unlink()
    assert "requirements-dev.lock is missing" in envlock.stale(
        tmp_path / "requirements-field.lock")


def test_check_fails_with_one_line_per_difference(tmp_path, capsys):
    lock = tmp_path / "x.lock"
    lock.write_text("# inputs-sha256: " + "0" * 64 + "\n#   x.txt\n"
                    "alpha==1.0 \\\n    --hash=sha256:aa\n")
    (tmp_path / "x.txt").write_text("alpha\n")
    venv = _fake_site(tmp_path / "venv", {})
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    assert envlock.main(["check", str(lock), "--venv", str(venv)]) == 1
    err = capsys.readouterr().err
    assert "differs from" in err and "`make setup`" in err
    assert "missing: alpha==1.0" in err and "x.lock is older than x.txt" in err


def test_pyproj_finds_its_proj_data():
    """Debian's pyproj in a venv looks for PROJ data under the venv and finds none
    ("Valid PROJ data directory not found"); the locked wheel carries its own."""
    import pyproj
    from pyproj import Transformer

    if not Path(pyproj.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()):
        pytest.skip(f"pyproj {pyproj.__version__} is not the venv's own (a system copy): "
                    "`make setup` installs the locked one")
    assert Path(pyproj.datadir.get_data_dir(), "proj.db").is_file()
    x, y = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        500000, 5300000)
    assert abs(x - 15.0) < 1e-6 and 47.8 < y < 47.9
