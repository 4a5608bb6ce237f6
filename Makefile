# The two commands of the README. Each creates .venv and installs what it needs.
# The main CPython, 3.11: the whole suite runs on it (scripts/test_pythons.py runs the core tests on 3.10, 3.12, 3.13).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,parquet]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crewtrain-nb quickstart demo-output

test: $(STAMP)
	scripts/ensure-test-tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python scripts/test_pythons.py
	$(BIN)/python -m pytest
