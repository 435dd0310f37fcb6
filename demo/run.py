"""`make demo`: the whole story on the built-in sample data.

sample data -> demo model (trained once, then reused) -> analyze the training regions ->
estimate the held-out region -> info of both -> QGIS: a rendering of the sample data and
screenshots of the explorer (headless), or QGIS itself with both bundles (with a display).
Everything lands in demo/out/; the trained model is kept in demo/cache/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo" / "out"
CACHE = ROOT / "demo" / "cache"
PY = sys.executable


def step(title: str) -> None:
    """Print a step header."""
    print(f"\n== {title}", flush=True)


def cli(*args: object) -> None:
    """Run the segexplain command line; stop the demo with its message on failure."""
    cmd = [PY, "-m", "segexplain.core.cli", *map(str, args)]
    t0 = time.monotonic()
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit(f"demo: `segexplain {' '.join(map(str, args))}` failed (see above)")
    print(f"   ({time.monotonic() - t0:.1f} s)", flush=True)


def main() -> None:
    """Run every step of the demo."""
    OUT.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    data = CACHE / "data"
    model = CACHE / "model"

    step("1/6 built-in sample data")
    if not (data / "train" / "dataset.json").exists():
        cli("sample-data", data)
    else:
        print(f"   reusing {data}")

    step("2/6 demo model (trained from scratch once, then reused)")
    if not (model / "training_log.json").exists():
        cli("train", "--data", data / "train", "--out", model)
    else:
        print(f"   reusing {model} (delete it to train again)")

    step("3/6 analyze the training regions")
    ref = OUT / "sample.segx"
    cli("analyze", "--data", data / "train", "--model", model, "--out", ref)

    step("4/6 estimate the held-out region (no labels used for the estimate)")
    new = OUT / "informal.segx"
    cli("estimate", "--data", data / "new", "--reference", ref, "--model", model,
        "--out", new)

    step("5/6 what the bundles say")
    cli("info", ref)
    cli("info", new)
    cli("export-tasks", new, "--out", OUT / "informal-tasks.gpkg")

    step("6/6 QGIS")
    env = dict(os.environ)
    runtime = CACHE / "xdg-runtime"  # Qt wants a private runtime folder; headless has none
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.setdefault("XDG_RUNTIME_DIR", str(runtime))
    images = sorted((data / "train" / "images").glob("*.tif"))
    sample = images[0]
    subprocess.run([PY, str(ROOT / "demo" / "render_map.py"), str(OUT / "sample-data.png"),
                    str(sample), str(data / "train" / "gt" / sample.name)], check=True, env=env)
    shots = ROOT / "demo" / "qgis_session.py"
    if shots.exists():
        if os.environ.get("DISPLAY") and not os.environ.get("CI"):
            subprocess.run(["qgis", "--nologo", "--noversioncheck", "--code", str(shots)],
                           env=dict(env, SEGEXPLAIN_DEMO_BUNDLES=f"{ref}{os.pathsep}{new}"))
        else:
            xvfb = shutil.which("xvfb-run")
            cmd = [PY, str(shots), str(ref), str(new), str(OUT)]
            subprocess.run([xvfb, "-a", *cmd] if xvfb else cmd, check=True,
                           env=dict(env, QT_QPA_PLATFORM="xcb" if xvfb else "offscreen"))
    print(f"\nDone. Outputs in {OUT}:")
    for p in sorted(OUT.iterdir()):
        print(f"   {p.name}")


if __name__ == "__main__":
    main()
