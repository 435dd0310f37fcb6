#!/usr/bin/env bash
# Idempotent set-up: Debian packages (as root), the worker venv, the segexplain command.
# Fast when nothing is missing: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${SEGEXPLAIN_VENV:-$ROOT/.venv}

APT_PACKAGES="qgis python3-qgis qgis-providers xvfb xauth python3-venv python3-pip \
python3-numpy python3-gdal \
python3-pyqtgraph pyqt5-dev-tools"

missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing qgis-provider-grass- >/dev/null
  else
    echo "setup: missing Debian packages. Run as root:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

PY=/usr/bin/python3
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV (system site packages: QGIS bindings, PyQt5, GDAL's osgeo)"
  $PY -m venv --system-site-packages "$VENV"
fi

# Install exactly the lock (hash-checked): the locked packages the venv lacks or has in
# another version, into the venv itself even where Debian has a copy (--ignore-installed),
# after removing the venv's packages that the lock does not have. The stamp is the lock's
# hash, so an unchanged lock costs nothing. SEGEXPLAIN_LOCK picks another lock file.
LOCK=${SEGEXPLAIN_LOCK:-requirements-dev.lock}
stamp="$VENV/.segexplain-lock"
want=$( (cat "$LOCK"; echo "$VENV") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  plan=$(mktemp -d)
  trap 'rm -rf "$plan"' EXIT
  "$VENV/bin/python" scripts/envlock.py plan "$LOCK" --need "$plan/need.txt" \
      --remove "$plan/remove.txt" | sed "s#^#setup: $LOCK: #"
  if [ -s "$plan/remove.txt" ]; then
    "$VENV/bin/python" -m pip uninstall -q -y --disable-pip-version-check -r "$plan/remove.txt"
  fi
  if [ -s "$plan/need.txt" ]; then
    echo "setup: installing from $LOCK into $VENV (torch takes a few minutes the first time)"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --require-hashes \
        --no-deps --ignore-installed -r "$plan/need.txt" 2>&1 \
        | { grep -v "^WARNING: Location" || true; }
  fi
  "$VENV/bin/python" scripts/envlock.py check "$LOCK"
  echo "$want" > "$stamp"
fi
rm -f "$VENV/.segexplain-requirements"  # the stamp of the unlocked installs before

# The checkout is the package `segexplain` (the QGIS plugin folder); expose it to the venv.
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ "$(readlink "$site/segexplain" 2>/dev/null)" != "$ROOT" ]; then
  rm -f "$site/segexplain"
  ln -s "$ROOT" "$site/segexplain"
fi
cli="$VENV/bin/segexplain"
if [ ! -x "$cli" ]; then
  cat > "$cli" <<PYEOF
#!$VENV/bin/python
import sys
from segexplain.core.cli import main
sys.exit(main())
PYEOF
  chmod +x "$cli"
fi
