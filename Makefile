# segexplain: `make demo` and `make test` do all the set-up themselves.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen
export PYTHONDONTWRITEBYTECODE = 1

.PHONY: setup test lint typecheck pytest test-fast demo bench resources package wheelhouse clean

setup:
	@scripts/setup.sh
	@$(MAKE) --no-print-directory resources

resources: resources_rc.py

resources_rc.py: resources.qrc icons/icon.svg
	@pyrcc5 -o $@ resources.qrc 2>/dev/null || $(PY) -m PyQt5.pyrcc_main -o $@ resources.qrc

lint: setup
	$(VENV)/bin/ruff check core segexplain_qgis bench tests __init__.py

typecheck: setup
	$(VENV)/bin/mypy core

# Core and plugin tests run in separate processes: the plugin tests load QGIS (and its
# GDAL) exactly as QGIS does, without the worker's rasterio/torch in the same process.
pytest: setup
	$(PY) -m pytest tests/core
	$(PY) -m pytest tests/qgis

test: setup lint typecheck pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

demo: setup
	$(PY) demo/run.py

bench: setup
	$(PY) bench/inference.py
	$(PY) bench/analytics.py
	$(PY) bench/dock.py

clean:
	rm -rf demo/out dist resources_rc.py .pytest_cache .mypy_cache .ruff_cache
