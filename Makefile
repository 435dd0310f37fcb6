# segexplain: `make demo` and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test lint typecheck pytest test-fast demo bench resources package check-package wheelhouse clean

setup:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory resources

resources: resources_rc.py

resources_rc.py: resources.qrc icons/icon.svg
	@pyrcc5 -o $@ resources.qrc 2>/dev/null || $(PY) -m PyQt5.pyrcc_main -o $@ resources.qrc

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

test: setup lint typecheck pytest

test-fast: setup
	$(PY) -m pytest -p no:qgis -m "not slow" tests/core
	$(PY) -m pytest -m "not slow" tests/qgis

demo: setup
	$(PY) demo/run.py

bench: setup
	$(PY) bench/inference.py
	$(PY) bench/analytics.py
	$(PY) bench/dock.py

# --- plugin zip and offline wheelhouse (engineer E) -----------------------------------
# `make package`       -> dist/segexplain-VERSION.zip (QGIS: Plugins > Install from ZIP)
# `make check-package` -> metadata fields, contents, compile, bandit over the plugin's code
# `make wheelhouse`    -> wheelhouse/: every wheel the worker needs, for offline laptops;
#                         WHEEL_ARGS="--platform win_amd64 --python-version 3.12" for another OS,
#                         WHEEL_ARGS="--extra-index-url URL-OF-PYTORCH-CPU-WHEELS" for CPU-only torch
#                         (WHEEL_REQS=some-file.txt to try a smaller subset)
WHEEL_REQS ?= requirements.txt
WHEEL_CONSTRAINTS ?= constraints.txt
WHEEL_ARGS ?=

package: setup
	$(PY) scripts/package.py build

check-package: package
	$(PY) scripts/package.py check

wheelhouse: setup
	mkdir -p wheelhouse
	$(PY) -m pip download --disable-pip-version-check --only-binary=:all: \
	    $(WHEEL_ARGS) -d wheelhouse -r $(WHEEL_REQS) -c $(WHEEL_CONSTRAINTS)
	cp $(WHEEL_REQS) wheelhouse/requirements.txt
	cp $(WHEEL_CONSTRAINTS) wheelhouse/constraints.txt
	@echo "wheelhouse: $$(ls wheelhouse/*.whl | wc -l) wheels, $$(du -sh wheelhouse | cut -f1)"
	@echo "offline install: python -m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt -c wheelhouse/constraints.txt"

clean:
	rm -rf demo/out dist resources_rc.py .pytest_cache .mypy_cache .ruff_cache
