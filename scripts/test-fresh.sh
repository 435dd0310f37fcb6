#!/usr/bin/env bash
# `make test-fresh`: what a new user's first run does, on this machine, from the lock.
# An empty temporary folder gets a venv built by scripts/setup.sh from
# requirements-dev.lock with pip's cache off (PIP_NO_CACHE_DIR: every package that comes
# from an index is downloaded again; torch's wheels come from wherever pip finds them),
# then the new venv's `segexplain` writes the small sample data, trains the tiny model
# and analyses the training regions. Prints the seconds of each step as one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d "${TMPDIR:-/tmp}/segexplain-fresh.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
now() { date +%s.%N; }
t0=$(now)
SEGEXPLAIN_VENV="$tmp/venv" PIP_NO_CACHE_DIR=1 scripts/setup.sh
t1=$(now)
seg="$tmp/venv/bin/segexplain"
"$seg" sample-data "$tmp/data" --small --progress none
t2=$(now)
"$seg" train --data "$tmp/data/train" --out "$tmp/model" --preset tiny --progress none
t3=$(now)
"$seg" analyze --data "$tmp/data/train" --model "$tmp/model" --out "$tmp/train.segx" \
    --patch-size 64 --progress none
t4=$(now)
test -f "$tmp/train.segx/manifest.json"
n=$("$tmp/venv/bin/python" -c "import json,sys; print(json.load(open(sys.argv[1]))['n_patches'])" \
    "$tmp/train.segx/manifest.json")
python3 - "$t0" "$t1" "$t2" "$t3" "$t4" "$n" <<'PYEOF'
import json, sys
t = [float(v) for v in sys.argv[1:6]]
print(json.dumps({"test_fresh": "ok", "install_s": round(t[1] - t[0], 1),
                  "sample_data_s": round(t[2] - t[1], 1), "train_tiny_s": round(t[3] - t[2], 1),
                  "analyze_s": round(t[4] - t[3], 1), "total_s": round(t[4] - t[0], 1),
                  "analyzed_patches": int(sys.argv[6])}))
PYEOF
