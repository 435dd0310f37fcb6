# segexplain: `make demo` and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup lock check-lock test test-fresh lint typecheck pytest test-fast demo bench resources \
	package check-package wheelhouse wheelhouse-field clean

setup:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory resources

resources: resources_rc.py

resources_rc.py: resources.qrc icons/icon.svg
	@pyrcc5 -o $@ resources.qrc 2>/dev/null || $(PY) -m PyQt5.pyrcc_main -o $@ resources.qrc

# `make lock`: requirements*.txt -> requirements-dev.lock, requirements.lock and
# requirements-field.lock (every package pinned, with hashes; uv from PyPI, scripts/lock.sh).
# `make lock UPGRADE=1`: newest versions everywhere, not only where the inputs changed.
lock:
	@UPGRADE=$(UPGRADE) scripts/lock.sh

# The venv must be exactly the lock: same packages, same versions, `pip check` clean.
check-lock: setup
	@$(PY) scripts/envlock.py check requirements-dev.lock

# lint-imports checks the layering contracts in .importlinter (core free of Qt, the plugin
# free of the worker's packages, the bundle reader on numpy + stdlib, layers, no cycles).
lint: setup
	$(VENV)/bin/ruff check core segexplain_qgis bench tests scripts __init__.py
	$(VENV)/bin/lint-imports --no-cache

typecheck: setup
	$(VENV)/bin/mypy core segexplain_qgis

# Core and plugin tests run in separate processes: the plugin tests load QGIS (and its
# GDAL) exactly as QGIS does, without the worker's rasterio/torch in the same process.
pytest: setup
	$(PY) -m pytest -p no:qgis tests/core
	$(PY) -m pytest tests/qgis

test: setup check-lock lint typecheck pytest

# A fresh install from the lock in an empty temporary folder (pip's cache off), then
# sample data -> a tiny model -> analyze with the new venv's `segexplain` (README: time).
test-fresh:
	@scripts/test-fresh.sh

test-fast: setup
	$(PY) -m pytest -p no:qgis -m "not slow" tests/core
	$(PY) -m pytest -m "not slow" tests/qgis

demo: setup
	$(PY) demo/run.py

bench: setup
	$(PY) bench/inference.py
	$(PY) bench/analytics.py
	$(PY) bench/dock.py

# --- plugin zip and offline wheelhouses ------------------------------------------------
# `make package`          -> dist/segexplain-VERSION.zip (QGIS: Plugins > Install from ZIP)
# `make check-package`    -> metadata fields, contents, compile, bandit over the plugin's code
# `make wheelhouse`       -> wheelhouse/: every wheel of requirements.lock (the full worker)
# `make wheelhouse-field` -> wheelhouse-field/: the torch-free field worker (tens of MB)
#   WHEEL_ARGS="--platform win_amd64 --python-version 3.12 --implementation cp" for a
#   Windows laptop (QGIS's Python 3.12); the lock's hashes cover every platform's files.
#   docs/offline.md: the offline install on Linux and Windows.
WHEEL_ARGS ?=

package: setup
	$(PY) scripts/package.py build

check-package: package
	$(PY) scripts/package.py check

wheelhouse:
	scripts/wheelhouse.sh requirements.lock wheelhouse $(WHEEL_ARGS)

wheelhouse-field:
	scripts/wheelhouse.sh requirements-field.lock wheelhouse-field $(WHEEL_ARGS)

clean:
	rm -rf demo/out dist resources_rc.py .pytest_cache .mypy_cache .ruff_cache
