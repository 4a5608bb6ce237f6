# The two commands of the README. Each creates .venv and installs what it needs.
PYTHON ?= python3
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
	$(BIN)/python -m pytest
