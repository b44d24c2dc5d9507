# Set-up and everyday commands. `make demo` and `make test` are all a new user needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench ui mesmer-env clean-data

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; set PYTHON=python3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,deploy]'
	touch $@

demo: setup
	$(BIN)/nucleus-subtyping demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python -m pytest tests/benchmarks -s -p no:cacheprovider

ui: setup
	DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/data/.dagster} $(BIN)/python -c 'from dagster_project.instance import ensure_dagster_home; ensure_dagster_home()'
	DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/data/.dagster} $(BIN)/dg dev

mesmer-env:
	bash mesmer_env/create_env.sh

clean-data:
	rm -rf data
