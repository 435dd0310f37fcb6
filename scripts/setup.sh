#!/usr/bin/env bash
# Idempotent set-up: Debian packages (as root), the worker venv, the segexplain command.
# Fast when nothing is missing: each step checks before it acts.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${SEGEXPLAIN_VENV:-$ROOT/.venv}

APT_PACKAGES="qgis python3-qgis qgis-providers xvfb xauth python3-venv python3-pip \
python3-numpy python3-scipy python3-pyproj python3-gdal \
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
  echo "setup: creating $VENV (system site packages: QGIS bindings, GDAL, rasterio)"
  $PY -m venv --system-site-packages "$VENV"
fi

stamp="$VENV/.segexplain-requirements"
want=$(cat requirements.txt requirements-dev.txt constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing pinned requirements into $VENV (torch takes a few minutes the first time)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      -r requirements-dev.txt -c constraints.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
  echo "$want" > "$stamp"
fi

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
