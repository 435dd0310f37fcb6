#!/usr/bin/env bash
# Download every wheel of a lock file (hash-checked) into a folder for offline installs.
#   scripts/wheelhouse.sh LOCK DEST [pip download options...]
# e.g. scripts/wheelhouse.sh requirements-field.lock wheelhouse-field
#      scripts/wheelhouse.sh requirements-field.lock wheelhouse-field-win \
#          --platform win_amd64 --python-version 3.12 --implementation cp
# DEST gets the wheels and a copy of the lock; install it on the offline machine with
#   python -m pip install --no-index --find-links DEST --require-hashes -r DEST/LOCK
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=$1
DEST=$2
shift 2
PY=${PYTHON:-/usr/bin/python3}
mkdir -p "$DEST"
# --no-deps: the lock already lists every package; the hashes pin each file.
"$PY" -m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps \
    --require-hashes -r "$LOCK" -d "$DEST" "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }
cp "$LOCK" "$DEST/"
echo "wheelhouse $DEST: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1)"
echo "offline install: python -m pip install --no-index --find-links $DEST --require-hashes -r $DEST/$(basename "$LOCK")"
